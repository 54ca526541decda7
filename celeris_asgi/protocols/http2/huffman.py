"""HPACK Huffman coding (RFC 7541 section 5.2 and Appendix B), table driven.

Decoding walks a byte-at-a-time state machine: a state is an inner node of the
Huffman tree, and one table lookup per input byte gives the next state and the
symbols completed on the way.  Compiled, that is a C loop with one load per
byte; uncompiled, one Python-level step per byte where a bit walk needs eight.
The code table itself is RFC data, taken from the ``hpack`` package rather than
restated here.
"""

from __future__ import annotations

import types
from array import array

from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH


class HuffmanError(ValueError):
    """An invalid Huffman-coded string: EOS inside, or bad / over-long padding."""


_EOS = 256


def _build_tree() -> tuple[list[list[int]], list[int], list[bool]]:
    """Children of every inner node (negative = leaf ~symbol), node depths, all-ones paths."""
    children: list[list[int]] = [[0, 0]]
    depth = [0]
    all_ones = [True]
    for symbol, (code, length) in enumerate(zip(REQUEST_CODES, REQUEST_CODES_LENGTH, strict=True)):
        node = 0
        for shift in range(length - 1, -1, -1):
            bit = (code >> shift) & 1
            if shift == 0:
                children[node][bit] = ~symbol
                break
            nxt = children[node][bit]
            if nxt == 0:
                nxt = len(children)
                children.append([0, 0])
                depth.append(depth[node] + 1)
                all_ones.append(all_ones[node] and bit == 1)
                children[node][bit] = nxt
            node = nxt
    return children, depth, all_ones


def _build_tables() -> tuple[array[int], bytes]:
    """The byte-step table, built by composing two nibble steps, and the accepting states.

    One 32-bit entry per (state, input byte): the next state in bits 0-7, how many symbols the
    byte completes (0-2: every code is at least 5 bits) in bits 8-9, _FAILED when it reaches EOS,
    and the symbols in bits 16-23 and 24-31.
    """
    children, depth, all_ones = _build_tree()
    nibble: list[tuple[int, bytes]] = []
    for state in range(len(children)):
        for value in range(16):
            node = state
            out = bytearray()
            failed = False
            for shift in (3, 2, 1, 0):
                node = children[node][(value >> shift) & 1]
                if node < 0:
                    if ~node == _EOS:
                        failed = True
                        break
                    out.append(~node)
                    node = 0
            nibble.append((-1 if failed else node, bytes(out)))
    table = array("I")
    for state in range(len(children)):
        for high in range(16):
            mid, first = nibble[state * 16 + high]
            for low in range(16):
                end, second = nibble[mid * 16 + low] if mid >= 0 else (-1, b"")
                symbols = first + second
                if end < 0:
                    table.append(_FAILED)
                else:
                    table.append(end | len(symbols) << 8 | sum(sym << (16 + 8 * i) for i, sym in enumerate(symbols)))
    # Padding is at most 7 bits, all ones: the prefix of EOS (RFC 7541 section 5.2).
    accepting = bytes(all_ones[n] and depth[n] <= 7 for n in range(len(children)))
    return table, accepting


_FAILED = 1 << 10
_STEP, _ACCEPTING = _build_tables()


def huffman_decode(data: bytes, start: int = 0, stop: int = -1) -> bytes:
    """Decode the Huffman-coded string literal ``data[start:stop]`` (to the end when ``stop`` < 0).

    Compiled, this is a C loop over the input with one table load per byte, writing into one buffer.
    """
    if stop < 0:
        stop = len(data)
    src = data
    step = _STEP
    buffer = bytearray((stop - start) * 8 // 5 + 1)  # every code is at least 5 bits
    out = buffer
    count = 0
    state = 0
    for i in range(start, stop):
        entry = step[state << 8 | src[i]]
        if entry & _FAILED:
            raise HuffmanError("EOS symbol inside a Huffman-coded string")
        state = entry & 0xFF
        symbols = entry >> 8 & 3
        if symbols:
            out[count] = entry >> 16 & 0xFF
            count += 1
            if symbols == 2:
                out[count] = entry >> 24
                count += 1
    if not _ACCEPTING[state]:
        raise HuffmanError("invalid Huffman padding")
    return bytes(out[:count])


def _byte_steps() -> tuple[list[int], list[bytes]]:
    """``_STEP`` for the interpreter, as two flat lists indexed like it: the next state times 256
    (-1 on EOS), and the symbols the byte completes as bytes.

    Unpacked once from the same table, so both builds decode alike. The lists share their items
    (256 distinct states, each distinct symbol pair once): a tuple per entry was ~20 MiB a process.
    """
    shifted = [state << 8 for state in range(256)]
    distinct: dict[bytes, bytes] = {}
    states: list[int] = []
    outputs: list[bytes] = []
    for entry in _STEP:
        if entry & _FAILED:
            states.append(-1)
            outputs.append(b"")
            continue
        symbols = bytes((entry >> 16 & 0xFF, entry >> 24)[: entry >> 8 & 3])
        states.append(shifted[entry & 0xFF])
        outputs.append(distinct.setdefault(symbols, symbols))
    return states, outputs


def _huffman_decode_interpreted(data: bytes, start: int = 0, stop: int = -1) -> bytes:
    """``huffman_decode`` for the pure-Python build: two list lookups and one append per byte.

    The packed-table loop above is a dozen bytecodes per byte when interpreted; this one is three
    times faster there, and would be many times slower than the packed loop compiled.
    """
    if stop < 0:
        stop = len(data)
    states = _NEXT_STATES
    outputs = _OUTPUTS
    state = 0
    parts: list[bytes] = []
    append = parts.append
    for byte in data[start:stop]:
        index = state | byte
        state = states[index]
        if state < 0:
            raise HuffmanError("EOS symbol inside a Huffman-coded string")
        append(outputs[index])
    if not _ACCEPTING[state >> 8]:
        raise HuffmanError("invalid Huffman padding")
    return b"".join(parts)


# Compiled, a module's functions are not Python function objects: the build decides the decoder.
if isinstance(_huffman_decode_interpreted, types.FunctionType):
    _NEXT_STATES, _OUTPUTS = _byte_steps()
    huffman_decode = _huffman_decode_interpreted


_CODES = REQUEST_CODES
_LENGTHS = REQUEST_CODES_LENGTH


def huffman_encode(data: bytes) -> bytes:
    """Huffman-code ``data``, padded with the most significant bits of EOS."""
    acc = 0
    bits = 0
    for byte in data:
        acc = (acc << _LENGTHS[byte]) | _CODES[byte]
        bits += _LENGTHS[byte]
    pad = -bits % 8
    acc = (acc << pad) | ((1 << pad) - 1)
    return acc.to_bytes((bits + pad) // 8, "big")


def huffman_encoded_length(data: bytes) -> int:
    """Length in bytes of ``huffman_encode(data)``, to choose between raw and Huffman literals."""
    lengths = _LENGTHS
    return (sum(lengths[b] for b in data) + 7) // 8
