"""The ASGI `tls` extension: what the app may know about a connection's TLS session.

Computed once per connection when it is accepted (the handshake is done by then) and carried by
its cycle.Endpoint into every scope, so a request pays nothing for it.
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    import asyncio

# ssl.SSLObject.version() -> the TLS record version the ASGI spec asks for.
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# RFC 4514 short names for the attributes Python's getpeercert() spells out.
_RDN_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "domainComponent": "DC",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "userId": "UID",
}


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The scope extensions of a TLS connection ({"tls": {...}}), None for a cleartext one; pass it
    to cycle.Endpoint."""
    ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    chain = _client_chain(ssl_object)
    tls = {
        "server_cert": _SERVER_CERTS.get(ssl_object.context),
        "client_cert_chain": chain,
        "client_cert_name": _rfc4514_name(ssl_object.getpeercert()) if chain else None,
        # A certificate that fails verification fails the handshake, so a connection that got this
        # far has none to report.
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": _cipher_suites(ssl_object.context).get(cipher[0]) if cipher else None,
    }
    return {"tls": tls}


def _client_chain(ssl_object: ssl.SSLObject) -> list[str]:
    """The certificates the client sent, as PEM, its own first; Python < 3.13 exposes only that one."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return []
    sent_chain = getattr(ssl_object, "get_unverified_chain", None)  # 3.13+: DER bytes per certificate
    return [ssl.DER_cert_to_PEM_cert(cert) for cert in (sent_chain() if sent_chain is not None else [der])]


def _rfc4514_name(peer_cert: Any) -> str | None:
    """The subject as an RFC 4514 string: the most specific RDN first, special characters escaped."""
    if not peer_cert:
        return None
    rdns = [
        "+".join(f"{_RDN_NAMES.get(key, key)}={_escape(value)}" for key, value in rdn)
        for rdn in reversed(peer_cert.get("subject", ()))
    ]
    return ",".join(rdns)


def _escape(value: str) -> str:
    escaped = "".join("\\" + char if char in ',+"\\<>;=' else char for char in value)
    if escaped.startswith((" ", "#")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and len(escaped) > 1:
        escaped = escaped[:-1] + "\\ "
    return escaped


@lru_cache(maxsize=8)
def _cipher_suites(context: ssl.SSLContext) -> dict[str, int]:
    """OpenSSL cipher name -> IANA suite number (the low 16 bits of OpenSSL's id), once per context."""
    return {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}


# The server's own certificate per context: the ssl module shows it only to the peer, so
# Config.create_ssl_context notes it from --ssl-certfile (a user-made context has none: None).
_SERVER_CERTS: WeakKeyDictionary[ssl.SSLContext, str] = WeakKeyDictionary()


def remember_server_cert(context: ssl.SSLContext, certfile: str) -> None:
    """Note the server certificate (the first PEM block of --ssl-certfile) for the `tls` extension."""
    with open(certfile, encoding="ascii", errors="replace") as file:
        text = file.read()
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start >= 0 and stop >= 0:
        _SERVER_CERTS[context] = text[start : stop + len(end)] + "\n"
