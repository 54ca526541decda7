# C declarations for huffman.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cimport cython

cdef int _EOS
cdef unsigned int _FAILED
cdef const unsigned int[::1] _STEP
cdef bytes _ACCEPTING
cdef list _CODES
cdef list _LENGTHS


@cython.locals(
    src="const unsigned char*",
    step="const unsigned int[::1]",
    buffer=bytearray,
    out="unsigned char*",
    count=Py_ssize_t,
    state=Py_ssize_t,
    i=Py_ssize_t,
    entry="unsigned int",
    symbols="unsigned int",
)
cpdef bytes huffman_decode(bytes data, Py_ssize_t start=*, Py_ssize_t stop=*)

@cython.locals(bits=Py_ssize_t, byte=cython.uchar, pad=Py_ssize_t)
cpdef bytes huffman_encode(bytes data)
