# C declarations for hpack_codec.py, compiled by Cython in pure-Python mode (see celeris_asgi/_compiled.py).
cimport cython

from .huffman cimport huffman_decode, huffman_encode

cdef tuple STATIC_TABLE
cdef Py_ssize_t _STATIC_LEN
cdef Py_ssize_t _ENTRY_OVERHEAD
cdef Py_ssize_t _MAX_INT_BYTES
cdef dict _STATIC_NAME_INDEX
cdef dict _STATIC_FULL_INDEX
cdef frozenset _SENSITIVE
cdef dict _FIELD_CACHES
cdef Py_ssize_t _FIELD_CACHE_MAX
cdef Py_ssize_t _FIELD_CACHE_ITEM_MAX
cdef Py_ssize_t _BLOCK_CACHE_ITEM_MAX
cdef dict _BLOCK_CACHES
cdef Py_ssize_t _BLOCK_CACHE_MAX
cdef Py_ssize_t _BLOCK_CACHE_FIELDS
cdef dict _STATUS_CACHE
cdef dict _STATIC_VETTED
cdef frozenset _CONNECTION_SPECIFIC


@cython.locals(value=Py_ssize_t, shift=Py_ssize_t, end=Py_ssize_t, byte=Py_ssize_t)
cdef (Py_ssize_t, Py_ssize_t) _decode_integer(bytes data, Py_ssize_t pos, Py_ssize_t mask) except *


cdef bytes _static_vetted(object check)


@cython.final
cdef class Decoder:
    cdef public list _dynamic
    cdef object _check
    cdef bytes _static_vetted
    cdef bytearray _dynamic_vetted
    cdef public bytearray vetted
    cdef public Py_ssize_t _size
    cdef Py_ssize_t _pos
    cdef public bint changed
    cdef public Py_ssize_t list_size
    cdef public Py_ssize_t max_allowed_table_size
    cdef public Py_ssize_t max_table_size

    @cython.locals(dynamic=list)
    cdef void _evict(self, Py_ssize_t limit) except *

    @cython.locals(size=Py_ssize_t)
    cdef void _add(self, tuple field) except *

    @cython.locals(offset=Py_ssize_t)
    cdef tuple _lookup(self, Py_ssize_t index)

    @cython.locals(first=Py_ssize_t, length=Py_ssize_t, end=Py_ssize_t)
    cdef bytes _string(self, bytes data, Py_ssize_t pos)

    @cython.locals(
        headers=list,
        vetted=bytearray,
        static_vetted=bytes,
        mark=cython.uchar,
        count=Py_ssize_t,
        static=tuple,
        dynamic=list,
        list_size=Py_ssize_t,
        oversized=bint,
        changed=bint,
        pos=Py_ssize_t,
        end=Py_ssize_t,
        byte=Py_ssize_t,
        index=Py_ssize_t,
        offset=Py_ssize_t,
        size=Py_ssize_t,
        prefix=Py_ssize_t,
        field=tuple,
    )
    cpdef tuple decode(self, bytes data, Py_ssize_t max_list_size)


@cython.locals(limit=Py_ssize_t, out=bytearray)
cdef bytes _encode_integer(Py_ssize_t value, Py_ssize_t prefix_bits, Py_ssize_t first)

@cython.locals(huffman_length=Py_ssize_t)
cdef bytes _encode_string(bytes data)

@cython.locals(first=Py_ssize_t)
cpdef bytes encode_field(bytes name, bytes value)


@cython.final
cdef class Encoder:
    cdef public dict _blocks
    cdef public dict _cache
    cdef public object _check
    cdef public bytes _prefix
    cdef public Py_ssize_t _table_size
    cdef object _head_status
    cdef object _head_defaults
    cdef bytes _head_block

    cdef bytes _miss(self, bytes name, bytes value)

    @cython.locals(cache=dict, parts=list, encoded=bytes)
    cdef bytes _fields(self, headers)

    @cython.locals(block=bytes)
    cdef bytes _block(self, headers)

    @cython.locals(block=bytes)
    cdef bytes _head(self, status, defaults)

    @cython.locals(block=bytes)
    cpdef bytes encode(self, status, headers, defaults=*)
