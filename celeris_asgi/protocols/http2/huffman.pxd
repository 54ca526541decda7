# C declarations for huffman.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cimport cython

cdef int _EOS
cdef list _TABLE
cdef list _ACCEPTING
cdef list _CODES
cdef list _LENGTHS


@cython.locals(table=list, state=Py_ssize_t, byte=cython.uchar, parts=list)
cpdef bytes huffman_decode(bytes data)

@cython.locals(bits=Py_ssize_t, byte=cython.uchar, pad=Py_ssize_t)
cpdef bytes huffman_encode(bytes data)
