"""ProxyHeadersMiddleware: what a trusted proxy says about the client reaches the app; nobody else's word.

The middleware is a pure scope transformation, so most tests call it directly with hand-built scopes,
table by table; the last ones run it inside the real server. Names cite RFC 7239 sections or the
deployment story the behaviour serves.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as sync_connect

from celeris_asgi.middleware.proxy_headers import ProxyHeadersMiddleware
from tests.apps import scope_json

pytestmark = pytest.mark.timeout(10)

PROXY = ("127.0.0.1", 40123)  # the direct peer: a reverse proxy on loopback, trusted by default
STRANGER = ("198.51.100.99", 40123)  # a direct peer nobody configured as a proxy


def make_scope(
    *headers: tuple[str, str], client: Any = PROXY, kind: str = "http", scheme: str = "http"
) -> dict[str, Any]:
    """A scope as the server builds it, with the proxy-facing Host first."""
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": scheme,
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"backend:8000"), *((n.encode(), v.encode("latin-1")) for n, v in headers)],
        "client": client,
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _send(message: dict[str, Any]) -> None:
    return None


def seen_by_app(scope: dict[str, Any], trusted: str | list[str] = "127.0.0.1") -> dict[str, Any]:
    """Run `scope` through a fresh middleware and return the scope the app was called with."""
    seen: list[dict[str, Any]] = []

    async def app(inner: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(inner)

    asyncio.run(ProxyHeadersMiddleware(app, trusted)(scope, _receive, _send))
    return seen[0]


def cases(table: list[tuple[Any, ...]]) -> list[Any]:
    """Table rows (id, *values) as pytest params."""
    return [pytest.param(*row[1:], id=row[0]) for row in table]


def host_of(scope: dict[str, Any]) -> list[bytes]:
    return [value for name, value in scope["headers"] if name == b"host"]


# --- who is trusted -------------------------------------------------------------------------------------

TRUST_TABLE = [
    # (id, trusted_hosts, direct peer, trusted?)
    ("default_trusts_loopback_v4", "127.0.0.1", ("127.0.0.1", 1), True),
    ("default_does_not_trust_others", "127.0.0.1", ("127.0.0.2", 1), False),
    ("comma_separated_string", "10.0.0.1, 127.0.0.1", ("127.0.0.1", 1), True),
    ("list_of_entries", ["10.0.0.1", "192.0.2.1"], ("192.0.2.1", 1), True),
    ("cidr_v4_member", "10.0.0.0/8", ("10.200.3.4", 1), True),
    ("cidr_v4_outsider", "10.0.0.0/8", ("11.0.0.1", 1), False),
    ("cidr_v6_member", "fd00::/8", ("fd12:3456::1", 1), True),
    ("ipv6_written_differently", "2001:db8::1", ("2001:DB8:0:0::1", 1), True),
    ("dual_stack_listener_reports_ipv4_mapped_peer", "127.0.0.1", ("::ffff:127.0.0.1", 1), True),
    ("ipv4_mapped_peer_in_cidr", "10.0.0.0/8", ("::ffff:10.1.1.1", 1), True),
    ("star_trusts_everyone", "*", ("203.0.113.5", 1), True),
    ("star_trusts_unix_socket_peer", "*", None, True),
    ("unix_literal_trusts_unix_socket_peer", "unix:", None, True),
    ("unix_with_socket_path_trusts_unix_socket_peer", "127.0.0.1, unix:/run/app.sock", None, True),
    ("unix_socket_peer_untrusted_by_default", "127.0.0.1", None, False),
    ("unix_literal_does_not_trust_tcp_peers", "unix:", ("127.0.0.1", 1), False),
    ("empty_config_trusts_nobody", "", ("127.0.0.1", 1), False),
]


@pytest.mark.parametrize(("trusted", "peer", "expected"), cases(TRUST_TABLE))
def test_proxy_headers_honoured_only_from_trusted_peer(trusted: Any, peer: Any, expected: bool) -> None:
    seen = seen_by_app(make_scope(("x-forwarded-proto", "https"), client=peer), trusted)
    assert seen["scheme"] == ("https" if expected else "http")


BAD_CONFIG = [
    ("hostname_is_not_an_address", "localhost", "invalid trusted host 'localhost'"),
    ("out_of_range_octet", "127.0.0.1, 10.0.0.300", "invalid trusted host '10.0.0.300'"),
    ("prefix_too_long", "10.0.0.0/33", "invalid trusted network '10.0.0.0/33'"),
    ("garbage_network", "ten/8", "invalid trusted network 'ten/8'"),
    ("host_bits_set", "10.0.0.1/8", "host bits are set (did you mean 10.0.0.0/8?)"),
    ("bracketed_ipv6", ["[::1]"], "invalid trusted host '[::1]'"),
    ("not_a_string", [127001], "invalid trusted host 127001: expected a string"),
]


@pytest.mark.parametrize(("config", "message"), cases(BAD_CONFIG))
def test_bad_trusted_hosts_entry_fails_at_construction_with_one_clear_line(config: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r"^[^\n]+$") as caught:
        ProxyHeadersMiddleware(_send, config)  # type: ignore[arg-type]
    assert message in str(caught.value)


# --- X-Forwarded-For ------------------------------------------------------------------------------------

XFF_TABLE = [
    # (id, X-Forwarded-For value, client the app sees); trusted: 127.0.0.1 and 10.0.0.0/8
    ("single_proxy_names_client", "203.0.113.7", ("203.0.113.7", 0)),
    ("port_is_kept", "203.0.113.7:5555", ("203.0.113.7", 5555)),
    ("bracketed_ipv6_with_port", "[2001:db8::17]:4711", ("2001:db8::17", 4711)),
    ("bracketed_ipv6_without_port", "[2001:db8::17]", ("2001:db8::17", 0)),
    ("bare_ipv6", "2001:db8::17", ("2001:db8::17", 0)),
    ("ipv6_canonicalised", "2001:DB8:0:0::17", ("2001:db8::17", 0)),
    ("trusted_hops_are_skipped_from_the_right", "203.0.113.7, 10.1.2.3, 10.4.5.6", ("203.0.113.7", 0)),
    (
        "client_spoofed_entries_left_of_real_client_ignored",
        "6.6.6.6, 203.0.113.7, 10.1.2.3",
        ("203.0.113.7", 0),
    ),
    ("untrusted_hop_in_chain_stops_the_walk", "203.0.113.7, 198.51.100.1, 10.1.2.3", ("198.51.100.1", 0)),
    ("all_hops_trusted_means_leftmost", "10.0.0.5, 127.0.0.1", ("10.0.0.5", 0)),
    ("empty_items_are_skipped", " , 203.0.113.7 ,", ("203.0.113.7", 0)),
    ("garbage_left_of_client_never_read", "not-an-ip, 203.0.113.7", ("203.0.113.7", 0)),
    ("unknown_hides_the_client", "unknown", None),
    ("obfuscated_identifier_kept", "_hidden", ("_hidden", 0)),
    ("garbage_word_ignored", "not-an-ip", PROXY),
    ("garbage_octets_ignored", "999.1.1.1", PROXY),
    ("port_out_of_range_ignored", "203.0.113.7:99999", PROXY),
    ("port_not_numeric_ignored", "203.0.113.7:http", PROXY),
    ("unclosed_bracket_ignored", "[2001:db8::17", PROXY),
    ("garbage_after_bracket_ignored", "[2001:db8::17]x", PROXY),
    ("garbage_reached_through_trusted_hops_ignored", "garbage, 10.0.0.1", PROXY),
    ("empty_header_ignored", "", PROXY),
]


@pytest.mark.parametrize(("xff", "client"), cases(XFF_TABLE))
def test_x_forwarded_for_client_is_first_untrusted_hop_from_the_right(xff: str, client: Any) -> None:
    seen = seen_by_app(make_scope(("x-forwarded-for", xff)), "127.0.0.1, 10.0.0.0/8")
    assert seen["client"] == client


def test_x_forwarded_for_split_over_several_header_lines_is_one_list() -> None:
    scope = make_scope(("x-forwarded-for", "6.6.6.6, 203.0.113.7"), ("x-forwarded-for", "10.1.2.3"))
    assert seen_by_app(scope, "127.0.0.1, 10.0.0.0/8")["client"] == ("203.0.113.7", 0)


def test_star_takes_leftmost_x_forwarded_for() -> None:
    seen = seen_by_app(make_scope(("x-forwarded-for", "203.0.113.7, 198.51.100.1")), "*")
    assert seen["client"] == ("203.0.113.7", 0)


# --- X-Forwarded-Proto / X-Forwarded-Host ---------------------------------------------------------------

PROTO_TABLE = [
    # (id, scope type, X-Forwarded-Proto, scheme the app sees)
    ("tls_terminating_proxy_https", "http", "https", "https"),
    ("plain_http", "http", "http", "http"),
    ("case_insensitive", "http", "HTTPS", "https"),
    ("websocket_behind_tls_is_wss", "websocket", "https", "wss"),
    ("websocket_plain_is_ws", "websocket", "http", "ws"),
    ("websocket_given_wss", "websocket", "wss", "wss"),
    ("http_request_given_wss_is_https", "http", "wss", "https"),
    ("unknown_scheme_ignored", "http", "ftp", "http"),
    ("empty_ignored", "http", "", "http"),
    ("list_without_x_forwarded_for_uses_nearest_proxy", "http", "https, http", "http"),
]


@pytest.mark.parametrize(("kind", "proto", "scheme"), cases(PROTO_TABLE))
def test_x_forwarded_proto_sets_scheme(kind: str, proto: str, scheme: str) -> None:
    seen = seen_by_app(
        make_scope(("x-forwarded-proto", proto), kind=kind, scheme="ws" if kind == "websocket" else "http")
    )
    assert seen["scheme"] == scheme


def test_chain_of_appending_proxies_lines_up_proto_and_host_with_the_chosen_client() -> None:
    """Each hop appends to all three headers, so position k of each describes the same hop."""
    scope = make_scope(
        ("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2"),
        ("x-forwarded-proto", "http, https, http"),
        ("x-forwarded-host", "evil.example, shop.example, internal.lb"),
    )
    seen = seen_by_app(scope, "127.0.0.1, 10.0.0.0/8")
    assert (seen["client"], seen["scheme"], host_of(seen)) == (("203.0.113.7", 0), "https", [b"shop.example"])


def test_proto_list_not_matching_x_forwarded_for_uses_nearest_proxy_entry() -> None:
    scope = make_scope(("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https, http"))
    assert seen_by_app(scope)["scheme"] == "http"


HOST_TABLE = [
    # (id, X-Forwarded-Host, host headers the app sees)
    ("name", "shop.example", [b"shop.example"]),
    ("name_with_port", "shop.example:8443", [b"shop.example:8443"]),
    ("ipv6_literal", "[2001:db8::1]:8443", [b"[2001:db8::1]:8443"]),
    ("header_injection_ignored", "shop.example\r\nx-admin: 1", [b"backend:8000"]),
    ("path_smuggling_ignored", "shop.example/evil", [b"backend:8000"]),
    ("userinfo_ignored", "user@shop.example", [b"backend:8000"]),
    ("empty_ignored", "", [b"backend:8000"]),
]


@pytest.mark.parametrize(("xfh", "hosts"), cases(HOST_TABLE))
def test_x_forwarded_host_replaces_host_header(xfh: str, hosts: list[bytes]) -> None:
    assert host_of(seen_by_app(make_scope(("x-forwarded-host", xfh)))) == hosts


def test_forwarded_host_is_added_when_request_had_no_host_header() -> None:
    scope = make_scope(("x-forwarded-host", "shop.example"))
    scope["headers"] = [h for h in scope["headers"] if h[0] != b"host"]
    assert seen_by_app(scope)["headers"][-1] == (b"host", b"shop.example")


def test_host_rewrite_builds_new_headers_list_in_original_order() -> None:
    scope = make_scope(("accept", "*/*"), ("x-forwarded-host", "shop.example"))
    original = scope["headers"]
    snapshot = list(original)
    seen = seen_by_app(scope)
    assert original == snapshot and scope["headers"] is original
    assert seen["headers"] == [(b"host", b"shop.example"), *snapshot[1:]]


# --- RFC 7239 Forwarded -----------------------------------------------------------------------------------

FORWARDED_TABLE = [
    # (id, Forwarded, client, scheme, Host the app sees or None: unchanged); trusted: 127.0.0.1, 10.0.0.0/8
    ("rfc7239_4_obfuscated_quoted", 'for="_gazonk"', ("_gazonk", 0), "http", None),
    (
        "rfc7239_4_ipv6_quoted_with_port",
        'For="[2001:db8:cafe::17]:4711"',
        ("2001:db8:cafe::17", 4711),
        "http",
        None,
    ),
    (
        "rfc7239_4_pairs_in_one_element",
        "for=192.0.2.60;proto=https;by=203.0.113.43",
        ("192.0.2.60", 0),
        "https",
        None,
    ),
    (
        "rfc7239_4_untrusted_hops_rightmost_wins",
        "for=192.0.2.43, for=198.51.100.17",
        ("198.51.100.17", 0),
        "http",
        None,
    ),
    ("rfc7239_4_quoted_pair_unescaped", r'for="\_hid\den"', ("_hidden", 0), "http", None),
    (
        "rfc7239_4_quoted_comma_is_not_a_separator",
        'for=192.0.2.60;host="a,b"',
        ("192.0.2.60", 0),
        "http",
        None,
    ),
    (
        "rfc7239_5_2_trusted_hops_skipped_proto_and_host_from_client_facing_element",
        "for=192.0.2.43;proto=https;host=a.example, for=10.0.0.2;proto=http;host=lb",
        ("192.0.2.43", 0),
        "https",
        b"a.example",
    ),
    (
        "rfc7239_5_2_all_trusted_leftmost",
        "for=10.0.0.1;proto=https, for=10.0.0.2",
        ("10.0.0.1", 0),
        "https",
        None,
    ),
    (
        "rfc7239_5_3_host",
        'for=192.0.2.60;host="a.example:8443"',
        ("192.0.2.60", 0),
        "http",
        b"a.example:8443",
    ),
    ("rfc7239_5_4_proto_case_insensitive", "proto=HTTPS", PROXY, "https", None),
    (
        "rfc7239_5_element_without_for_keeps_client",
        "proto=https;host=a.example",
        PROXY,
        "https",
        b"a.example",
    ),
    (
        "rfc7239_6_1_unquoted_bracketed_ipv6_tolerated",
        "for=[2001:db8::1]:80",
        ("2001:db8::1", 80),
        "http",
        None,
    ),
    ("rfc7239_6_2_unknown_hides_client", "for=unknown;proto=https", None, "https", None),
    ("rfc7239_6_2_unknown_is_case_insensitive", 'for="UNKNOWN:8080"', None, "http", None),
    ("rfc7239_6_3_obfuscated_port_reported_as_zero", 'for="192.0.2.60:_p1"', ("192.0.2.60", 0), "http", None),
    ("rfc7239_6_3_obfuscated_node_with_port", 'for="_hidden:4711"', ("_hidden", 4711), "http", None),
    ("rfc7239_6_obfuscated_stops_the_walk", "for=192.0.2.9, for=_x, for=10.0.0.3", ("_x", 0), "http", None),
    ("rfc7239_7_1_empty_list_items_allowed", ", for=192.0.2.60 ,, ", ("192.0.2.60", 0), "http", None),
    ("rfc7239_7_1_empty_pairs_allowed", "for=192.0.2.60;;proto=https;", ("192.0.2.60", 0), "https", None),
    ("rfc7239_8_1_garbage_for_ignored", "for=999.0.0.1;proto=https", PROXY, "https", None),
    ("rfc7239_8_1_garbage_proto_ignored", "for=192.0.2.60;proto=gopher", ("192.0.2.60", 0), "http", None),
    ("rfc7239_8_1_garbage_host_ignored", 'for=192.0.2.60;host="a b"', ("192.0.2.60", 0), "http", None),
]


@pytest.mark.parametrize(("forwarded", "client", "scheme", "host"), cases(FORWARDED_TABLE))
def test_forwarded_header(forwarded: str, client: Any, scheme: str, host: bytes | None) -> None:
    seen = seen_by_app(make_scope(("forwarded", forwarded)), "127.0.0.1, 10.0.0.0/8")
    assert (seen["client"], seen["scheme"], host_of(seen)) == (client, scheme, [host or b"backend:8000"])


MALFORMED_FORWARDED = [
    ("unterminated_quote", 'for="192.0.2.60;proto=https'),
    ("missing_equals", "for192.0.2.60;proto=https"),
    ("empty_unquoted_value", "for=;proto=https"),
    ("pairs_separated_only_by_space", "for=192.0.2.60 proto=https"),
    ("space_around_equals", "for = 192.0.2.60;proto=https"),
    ("rfc7239_4_parameter_repeated_in_element", "for=192.0.2.60;proto=https;proto=http"),
    ("only_separators", " ,; ,"),
]


@pytest.mark.parametrize("forwarded", cases(MALFORMED_FORWARDED))
def test_malformed_forwarded_leaves_scope_untouched(forwarded: str) -> None:
    scope = make_scope(("forwarded", forwarded))
    assert seen_by_app(scope) is scope


def test_rfc7239_7_1_forwarded_split_over_several_header_lines_is_one_list() -> None:
    scope = make_scope(("forwarded", "for=192.0.2.43;proto=https"), ("forwarded", "for=10.0.0.2;proto=http"))
    seen = seen_by_app(scope, "127.0.0.1, 10.0.0.0/8")
    assert (seen["client"], seen["scheme"]) == (("192.0.2.43", 0), "https")


def test_rfc7239_7_4_forwarded_wins_over_x_forwarded_headers() -> None:
    scope = make_scope(
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=192.0.2.60;proto=https"),
    )
    seen = seen_by_app(scope)
    assert (seen["client"], seen["scheme"], host_of(seen)) == (("192.0.2.60", 0), "https", [b"backend:8000"])


def test_rfc7239_7_4_malformed_forwarded_does_not_fall_back_to_x_forwarded_headers() -> None:
    """The proxy speaks Forwarded; an X-Forwarded-For beside it may be the client's own, passed through."""
    scope = make_scope(("x-forwarded-for", "6.6.6.6"), ("forwarded", 'for="192.0.2.60'))
    assert seen_by_app(scope) is scope


def test_forwarded_websocket_upgrade_through_tls_proxy_is_wss() -> None:
    scope = make_scope(("forwarded", "for=192.0.2.60;proto=https"), kind="websocket", scheme="ws")
    seen = seen_by_app(scope)
    assert (seen["client"], seen["scheme"]) == (("192.0.2.60", 0), "wss")


# --- the scope the server handed over -------------------------------------------------------------------


def test_rewrite_is_a_copy_the_server_scope_is_not_mutated() -> None:
    scope = make_scope(
        ("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "a.example")
    )
    before = {**scope, "headers": list(scope["headers"])}
    seen = seen_by_app(scope)
    assert scope == before
    assert seen is not scope
    untouched = {key for key in scope if key not in ("client", "scheme", "headers")}
    assert all(seen[key] is scope[key] for key in untouched)


COMMON_CASES = [
    ("no_proxy_headers_from_trusted_peer", make_scope(("accept", "*/*")), "127.0.0.1"),
    (
        "headers_from_untrusted_peer",
        make_scope(("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6"), client=STRANGER),
        "127.0.0.1",
    ),
    ("headers_that_change_nothing", make_scope(("x-forwarded-proto", "ftp")), "127.0.0.1"),
]


@pytest.mark.parametrize(("scope", "trusted"), cases(COMMON_CASES))
def test_common_case_passes_the_very_same_scope(scope: dict[str, Any], trusted: str) -> None:
    headers = scope["headers"]
    seen = seen_by_app(scope, trusted)
    assert seen is scope and seen["headers"] is headers


def test_lifespan_scope_passes_through() -> None:
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    assert seen_by_app(scope, "*") is scope


def test_flood_of_distinct_addresses_keeps_trust_cache_bounded() -> None:
    """Client-controlled X-Forwarded-For entries are looked up too; memory must not grow with them.

    Measured from outside, in memory blocks the interpreter holds (sys.getallocatedblocks), each
    remembered address taking ~4: after 100 warm-up addresses, 3,000 more distinct ones never add
    more than ~3,800 blocks at once (the 1,024-entry cache, cleared when full). A cache of 1,536
    peaks at ~5,800, one without a bound at ~12,000; both fail. The verdicts stay right after."""
    clients: list[Any] = []
    peaks: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        clients[:] = [scope["client"]]  # the last one only: the test itself must not grow

    middleware = ProxyHeadersMiddleware(app, "127.0.0.1, 10.0.0.0/8")

    async def flood(first: int, count: int) -> None:
        for i in range(first, first + count):
            address = f"203.{i // 65536}.{i // 256 % 256}.{i % 256}"
            await middleware(make_scope(("x-forwarded-for", address)), _receive, _send)
            if i % 32 == 0:
                peaks.append(sys.getallocatedblocks())

    async def measure() -> int:
        """Blocks held at the flood's peak beyond those held before it (one loop, no stray garbage)."""
        await flood(0, 100)
        peaks.clear()
        gc.collect()
        before = sys.getallocatedblocks()
        await flood(100, 3000)
        return max(peaks) - before

    held = asyncio.run(measure())
    assert clients == [("203.0.12.27", 0)]  # the flood's last address, judged like any other
    assert held < 5000, f"{held} more memory blocks held while judging 3,000 distinct addresses"
    asyncio.run(middleware(make_scope(("x-forwarded-for", "203.0.113.7, 10.1.2.3")), _receive, _send))
    assert clients == [("203.0.113.7", 0)]  # a trusted hop is still walked past after the flood


# --- end to end: the real server applies the rules when proxy_headers is on ---------------------------------

E2E_TABLE = [
    # (id, forwarded_allow_ips, request headers, client, scheme, Host the app sees; None: as sent)
    (
        "nginx_style_x_forwarded_headers_from_trusted_proxy",
        "127.0.0.1",
        {
            "x-forwarded-for": "6.6.6.6, 203.0.113.7",
            "x-forwarded-proto": "https",
            "x-forwarded-host": "a.example",
        },
        ["203.0.113.7", 0],
        "https",
        "a.example",
    ),
    (
        "rfc7239_forwarded_from_trusted_proxy",
        "127.0.0.1",
        {"forwarded": 'for="[2001:db8::17]:4711";proto=https;host=a.example'},
        ["2001:db8::17", 4711],
        "https",
        "a.example",
    ),
    (
        "headers_from_an_untrusted_peer_are_ignored",
        "10.0.0.0/8",
        {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https", "forwarded": "for=203.0.113.7"},
        None,
        "http",
        None,
    ),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("http_version", ["HTTP/1.1", "HTTP/2"])
@pytest.mark.parametrize(("allow", "headers", "client", "scheme", "host"), cases(E2E_TABLE))
def test_app_behind_proxy_sees_forwarded_client_scheme_and_host(
    serve: Any, http_version: str, allow: str, headers: dict[str, str], client: Any, scheme: str, host: str | None
) -> None:
    server = serve(scope_json, proxy_headers=True, forwarded_allow_ips=allow)
    h2 = http_version == "HTTP/2"  # h2c with prior knowledge: the HTTP/2 protocol applies the same rules
    with httpx.Client(trust_env=False, timeout=5, http1=not h2, http2=h2) as http:
        response = http.get(server.url + "/", headers=headers)
    assert response.status_code == 200
    assert response.http_version == http_version
    scope = response.json()
    if client is None:  # untouched: the real loopback peer
        assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    else:
        assert scope["client"] == client
    assert scope["scheme"] == scheme
    hosts = [value for name, value in scope["headers"] if name == "host"]
    assert hosts == [host or f"127.0.0.1:{server.port}"]


async def _websocket_scope_json(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts a WebSocket and sends the scope's client and scheme as one text message."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps([scope["client"], scope["scheme"]])})
        await send({"type": "websocket.close"})


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("allow", "client", "scheme"),
    [("127.0.0.1", ["203.0.113.7", 0], "wss"), ("10.0.0.0/8", None, "ws")],
    ids=["trusted_proxy_behind_tls_gives_wss", "untrusted_peer_is_ignored"],
)
def test_websocket_behind_proxy_sees_forwarded_client_and_wss(serve: Any, allow: str, client: Any, scheme: str) -> None:
    server = serve(_websocket_scope_json, proxy_headers=True, forwarded_allow_ips=allow)
    headers = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
    with sync_connect(f"ws://127.0.0.1:{server.port}/", additional_headers=headers, open_timeout=5) as ws:
        seen_client, seen_scheme = json.loads(ws.recv(timeout=5))
    if client is None:
        assert seen_client[0] == "127.0.0.1" and seen_client[1] > 0
    else:
        assert seen_client == client
    assert seen_scheme == scheme
