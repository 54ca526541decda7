"""HPACK Huffman coding (RFC 7541 section 5.2 and Appendix B), table driven.

Decoding walks a byte-at-a-time state machine: a state is an inner node of the
Huffman tree, and one table lookup per input byte gives the next state and the
symbols completed on the way.  That is one Python-level step per byte where a
bit walk needs eight.  The code table itself is RFC data, taken from the
``hpack`` package rather than restated here.
"""

from __future__ import annotations

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


def _build_tables() -> tuple[list[tuple[int, bytes]], list[bool]]:
    """The byte-step table, built by composing two nibble steps, and the accepting states."""
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
    table: list[tuple[int, bytes]] = []
    for state in range(len(children)):
        for high in range(16):
            mid, first = nibble[state * 16 + high]
            if mid < 0:
                table.extend([(-1, b"")] * 16)
                continue
            base = mid * 16
            for low in range(16):
                end, second = nibble[base + low]
                table.append((end, first + second) if end >= 0 else (-1, b""))
    # Padding is at most 7 bits, all ones: the prefix of EOS (RFC 7541 section 5.2).
    accepting = [all_ones[n] and depth[n] <= 7 for n in range(len(children))]
    return table, accepting


_TABLE, _ACCEPTING = _build_tables()


def huffman_decode(data: bytes) -> bytes:
    """Decode one Huffman-coded string literal."""
    table = _TABLE
    state = 0
    parts: list[bytes] = []
    append = parts.append
    for byte in data:
        state, out = table[state << 8 | byte]
        if state < 0:
            raise HuffmanError("EOS symbol inside a Huffman-coded string")
        append(out)
    if not _ACCEPTING[state]:
        raise HuffmanError("invalid Huffman padding")
    return b"".join(parts)


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
