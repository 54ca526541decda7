"""HPACK (RFC 7541): our decoder against Appendix C and against the ``hpack`` package as an oracle.

The decoder is a hand-specialised replacement for ``hpack.Decoder`` on the hot
path, so it must agree with it on everything ``hpack`` produces and reject
what RFC 7541 calls a decoding error.  The encoder must produce blocks any
decoder reads back, that never touch the dynamic table (so caching them is sound).
"""

from __future__ import annotations

import os
import random

import hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

from celeris_asgi.protocols.http2.hpack_codec import Decoder, Encoder, HPACKError
from celeris_asgi.protocols.http2.huffman import HuffmanError, huffman_decode, huffman_encode

pytestmark = pytest.mark.timeout(30)

UNLIMITED = 1 << 30
DATE1 = (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT")
DATE2 = (b"date", b"Mon, 21 Oct 2013 20:13:22 GMT")
LOCATION = (b"location", b"https://www.example.com")
COOKIE = (b"set-cookie", b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")
REQ1 = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"www.example.com")]
REQ2 = [*REQ1, (b"cache-control", b"no-cache")]
REQ3 = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":path", b"/index.html"),
    (b":authority", b"www.example.com"),
    (b"custom-key", b"custom-value"),
]
RESP1 = [(b":status", b"302"), (b"cache-control", b"private"), DATE1, LOCATION]
RESP2 = [(b":status", b"307"), (b"cache-control", b"private"), DATE1, LOCATION]
RESP3 = [
    (b":status", b"200"),
    (b"cache-control", b"private"),
    DATE2,
    LOCATION,
    (b"content-encoding", b"gzip"),
    COOKIE,
]

# RFC 7541 Appendix C: (max table size, [(block hex, decoded fields, table size after)]).
APPENDIX_C = {
    "C.3 requests without Huffman": (
        4096,
        [
            ("828684410f7777772e6578616d706c652e636f6d", REQ1, 57),
            ("828684be58086e6f2d6361636865", REQ2, 110),
            ("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565", REQ3, 164),
        ],
    ),
    "C.4 requests with Huffman": (
        4096,
        [
            ("828684418cf1e3c2e5f23a6ba0ab90f4ff", REQ1, 57),
            ("828684be5886a8eb10649cbf", REQ2, 110),
            ("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf", REQ3, 164),
        ],
    ),
    "C.5 responses without Huffman, evictions": (
        256,
        [
            (
                "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d54"
                "6e1768747470733a2f2f7777772e6578616d706c652e636f6d",
                RESP1,
                222,
            ),
            ("4803333037c1c0bf", RESP2, 222),
            (
                "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d"
                "4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273"
                "696f6e3d31",
                RESP3,
                215,
            ),
        ],
    ),
    "C.6 responses with Huffman, evictions": (
        256,
        [
            (
                "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97"
                "c8e9ae82ae43d3",
                RESP1,
                222,
            ),
            ("4883640effc1c0bf", RESP2, 222),
            (
                "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd"
                "5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
                RESP3,
                215,
            ),
        ],
    ),
}


@pytest.mark.parametrize("name", list(APPENDIX_C))
def test_rfc7541_appendix_c_examples_decode_with_the_documented_table_sizes(name):
    table_size, blocks = APPENDIX_C[name]
    decoder = Decoder(table_size)
    for block, expected, size in blocks:
        fields, oversized = decoder.decode(bytes.fromhex(block), UNLIMITED)
        assert fields == expected
        assert not oversized
        assert decoder.table_size == size


@pytest.mark.parametrize(
    ("block", "field", "changes_table"),
    [
        ("400a637573746f6d2d6b65790d637573746f6d2d686561646572", (b"custom-key", b"custom-header"), True),
        ("040c2f73616d706c652f70617468", (b":path", b"/sample/path"), False),
        ("100870617373776f726406736563726574", (b"password", b"secret"), False),
        ("82", (b":method", b"GET"), False),
    ],
)
def test_rfc7541_c2_single_representations(block, field, changes_table):
    decoder = Decoder()
    assert decoder.decode(bytes.fromhex(block), UNLIMITED) == ([field], False)
    assert decoder.changed is changes_table


def _random_headers(rng: random.Random) -> list[tuple[bytes, bytes]]:
    names = [
        b"accept",
        b"user-agent",
        b"cookie",
        b"x-custom",
        b":path",
        b"cache-control",
        b"x-" + os.urandom(3).hex().encode(),
    ]
    values = [
        b"",
        b"gzip, deflate",
        b"/",
        b"no-cache",
        os.urandom(rng.randint(1, 40)).hex().encode(),
        bytes(range(32, 127)),
    ]
    return [(rng.choice(names), rng.choice(values)) for _ in range(rng.randint(0, 12))]


def _even_value(name: bytes, value: bytes) -> bool:
    """A pure field check for the decoder's vetted marks: any rule will do, this one splits fields."""
    return len(value) % 2 == 0


@pytest.mark.parametrize("seed", range(8))
def test_decoder_agrees_with_hpack_oracle_on_random_conversations(seed):
    """Many blocks through one context: indexing, eviction, Huffman, never-indexed, size updates."""
    rng = random.Random(seed)
    encoder = hpack.Encoder()
    oracle = hpack.Decoder()
    ours = Decoder(check=_even_value)
    vetted_fields = 0
    for step in range(200):
        if step % 37 == 5:
            size = rng.choice([0, 64, 256, 1024, 4096])
            encoder.header_table_size = size  # emits a dynamic table size update in the next block
        headers = _random_headers(rng)
        sensitive = [(n, v, rng.random() < 0.2) for n, v in headers]
        block = encoder.encode(
            [hpack.NeverIndexedHeaderTuple(n, v) if s else (n, v) for n, v, s in sensitive],
            huffman=rng.random() < 0.5,
        )
        expected = [(bytes(n), bytes(v)) for n, v in oracle.decode(block, raw=True)]
        fields, oversized = ours.decode(block, UNLIMITED)
        assert fields == expected
        assert not oversized
        assert ours.table_size == sum(32 + len(n) + len(v) for n, v in oracle.header_table.dynamic_entries)
        # A field is marked vetted only when the check passes it, through indexing and eviction alike.
        marks = ours.vetted[: len(fields)]
        assert len(marks) == len(fields)
        assert all(_even_value(*field) for field, mark in zip(fields, marks, strict=True) if mark)
        vetted_fields += sum(marks)
    assert vetted_fields  # the marks are used, not only sound


def test_huffman_matches_hpack_both_ways():
    encoder = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    rng = random.Random(1)
    for length in [*range(40), 200, 1000]:
        data = bytes(rng.randrange(256) for _ in range(length))
        encoded = encoder.encode(data)
        assert huffman_encode(data) == encoded
        assert huffman_decode(encoded) == data


@pytest.mark.parametrize(
    ("encoded", "why"),
    [
        (bytes.fromhex("ffffffff"), "EOS inside the string (30 ones)"),
        (b"\x00", "padding not all ones (a 5-bit code, then 000)"),
        (huffman_encode(b"a") + b"\xff", "padding longer than 7 bits"),
    ],
)
def test_rfc7541_5_2_huffman_decoding_errors(encoded, why):
    with pytest.raises(HuffmanError):
        huffman_decode(encoded)


@pytest.mark.parametrize(
    ("block", "why"),
    [
        (b"\x80", "indexed field with index 0"),
        (b"\xbf", "index 63 beyond an empty dynamic table"),
        (b"\xff\xff\xff\xff\xff\xff\xff", "integer that never ends"),
        (b"\x40\x0a", "literal name shorter than its length"),
        (b"\x04\x85\xff", "Huffman string truncated"),
        (b"\x3f\xe2\x1f", "table size update above SETTINGS_HEADER_TABLE_SIZE (4096)"),
        (b"\x82\x20", "table size update after a field"),
        (b"\x04\x81\xff", "Huffman EOS in a value"),
    ],
)
def test_rfc7541_malformed_blocks_are_decoding_errors(block, why):
    with pytest.raises(HPACKError):
        Decoder().decode(block, UNLIMITED)


def test_decoded_size_limit_stops_collecting_but_keeps_table_in_step():
    """The HPACK bomb: a 4 KB entry referenced 1000 times decodes to 4 MB; we hold none of it."""
    encoder = hpack.Encoder()
    first = encoder.encode([(b"x-big", b"v" * 4000)])
    bomb = encoder.encode([(b"x-big", b"v" * 4000)] * 1000)
    decoder = Decoder()
    fields, oversized = decoder.decode(first, 65536)
    assert not oversized
    fields, oversized = decoder.decode(bomb, 65536)
    assert oversized
    assert fields == []
    after = encoder.encode([(b"x-big", b"v" * 4000), (b"a", b"b")])
    assert decoder.decode(after, 65536) == ([(b"x-big", b"v" * 4000), (b"a", b"b")], False)


def test_changed_flag_reports_exactly_the_blocks_that_touch_the_table():
    encoder = hpack.Encoder()
    decoder = Decoder()
    decoder.decode(encoder.encode([(b"x-a", b"1")]), UNLIMITED)
    assert decoder.changed
    decoder.decode(encoder.encode([(b"x-a", b"1")]), UNLIMITED)  # now an indexed reference
    assert not decoder.changed
    decoder.decode(b"\x3f\xe1\x1f", UNLIMITED)  # size update to 4096: still a table change
    assert decoder.changed


def test_encoder_blocks_decode_with_hpack_and_never_index():
    encoder = Encoder()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"set-cookie", b"session=abc"),
        (b"x-custom", b"value"),
        (b"cache-control", b"private"),
        (b"Content-Length", b"12"),
        (b"connection", b"close"),
    ]
    block = encoder.encode(404, headers)
    oracle = hpack.Decoder()
    decoded = oracle.decode(block, raw=True)
    assert decoded == [
        (b":status", b"404"),
        (b"content-type", b"text/html; charset=utf-8"),
        (b"set-cookie", b"session=abc"),
        (b"x-custom", b"value"),
        (b"cache-control", b"private"),
        (b"content-length", b"12"),
    ]
    assert len(oracle.header_table.dynamic_entries) == 0
    assert isinstance(decoded[2], hpack.NeverIndexedHeaderTuple)
    assert encoder.encode(404, headers) == block  # stateless: the same block every time


def test_encoder_defaults_come_before_app_headers_and_unhashable_lists_work():
    encoder = Encoder()
    block = encoder.encode(200, [[b"x-a", b"1"]], [(b"server", b"celeris")])
    assert hpack.Decoder().decode(block, raw=True) == [
        (b":status", b"200"),
        (b"server", b"celeris"),
        (b"x-a", b"1"),
    ]


def test_encoder_follows_each_new_defaults_list_and_status():
    """The encoded status and defaults are kept for the last pair: a new second's defaults list, a
    new status, trailers and interim responses must each still be encoded as given."""
    encoder = Encoder()
    decode = hpack.Decoder().decode
    first = [(b"server", b"celeris"), (b"date", b"Sun, 06 Dec 2026 15:00:00 GMT")]
    second = [(b"server", b"celeris"), (b"date", b"Sun, 06 Dec 2026 15:00:01 GMT")]
    app = [(b"x-a", b"1")]
    assert decode(encoder.encode(200, app, first), raw=True) == [(b":status", b"200"), *first, *app]
    assert decode(encoder.encode(200, app, first), raw=True) == [(b":status", b"200"), *first, *app]
    assert decode(encoder.encode(404, app, first), raw=True) == [(b":status", b"404"), *first, *app]
    assert decode(encoder.encode(404, app, second), raw=True) == [(b":status", b"404"), *second, *app]
    assert decode(encoder.encode(None, app), raw=True) == app  # trailers: no status, no defaults
    assert decode(encoder.encode(103, app), raw=True) == [(b":status", b"103"), *app]
    assert decode(encoder.encode(404, app, second), raw=True) == [(b":status", b"404"), *second, *app]


def test_encoder_signals_table_size_zero_once_after_the_peer_shrinks_its_table():
    encoder = Encoder()
    encoder.set_peer_table_size(4096)
    assert encoder.encode(200, []) == b"\x88"
    encoder.set_peer_table_size(100)
    assert encoder.encode(200, []) == b"\x20\x88"
    assert encoder.encode(200, []) == b"\x88"


def test_encoder_check_vets_each_distinct_field():
    seen = []

    def check(name: bytes, value: bytes) -> None:
        seen.append(name)
        if b"\n" in value:
            raise RuntimeError("bad value")

    encoder = Encoder(check)
    encoder.encode(200, [(b"x-once", b"1")])
    encoder.encode(200, [(b"x-once", b"1")])
    assert seen == [b"x-once"]
    with pytest.raises(RuntimeError):
        encoder.encode(200, [(b"x-bad", b"a\nb")])


def test_decoder_agrees_with_hpack_on_corrupted_and_random_blocks():
    """Differential fuzzing: the same verdict (fields, or a decoding error) as the oracle, byte for byte."""
    rng = random.Random(5)
    encoder = hpack.Encoder()
    valid = [
        encoder.encode(
            [(b"x-%d" % rng.randrange(50), rng.randbytes(rng.randrange(20)).hex().encode()) for _ in range(4)],
            huffman=rng.random() < 0.5,
        )
        for _ in range(100)
    ]
    for trial in range(5000):
        if trial % 3 == 0:
            data = rng.randbytes(rng.randrange(1, 30))
        else:
            corrupted = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                corrupted[rng.randrange(len(corrupted))] = rng.randrange(256)
            data = bytes(corrupted)
        try:
            expected = [(bytes(n), bytes(v)) for n, v in hpack.Decoder().decode(data, raw=True)]
        except hpack.HPACKError:
            expected = None
        try:
            fields = Decoder().decode(data, UNLIMITED)[0]
        except HPACKError:
            fields = None
        assert fields == expected, data.hex()
