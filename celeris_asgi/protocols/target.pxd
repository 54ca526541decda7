# C declarations for target.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cdef dict _CACHE
cdef Py_ssize_t _CACHE_MAX
cdef Py_ssize_t _CACHE_ITEM_MAX

cpdef tuple split_origin_form(bytes target)
