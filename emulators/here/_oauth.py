"""OAuth 1.0a request signatures (RFC 5849) with HMAC-SHA256, as HERE's token endpoint checks them.

Deliberately the emulator's own few lines (``hmac``, ``hashlib``, ``urllib.parse``): the bridge
signs with oauthlib, and a verifier built on the same library would share its mistakes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import quote, unquote

SIGNATURE_METHOD = "HMAC-SHA256"
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class MalformedHeader(ValueError):
    """The Authorization header is not a well-formed OAuth 1.0 header (HERE's 401202)."""


def percent_encode(value: str) -> str:
    """RFC 5849 3.6: UTF-8, then every byte but ALPHA / DIGIT / ``-._~`` as ``%XX``."""
    return quote(value, safe="~")


def base_string_uri(scheme: str, host: str, path: str) -> str:
    """RFC 5849 3.4.1.2: lower-case scheme and host, no default port, no query or fragment."""
    scheme = scheme.lower()
    host = host.lower()
    default = _DEFAULT_PORTS.get(scheme)
    head, sep, port = host.rpartition(":")
    if sep and default is not None and port == default and not head.endswith(":"):
        host = head
    return f"{scheme}://{host}{path or '/'}"


def normalized_parameters(params: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 3.4.1.3.2: encode names and values, sort by name then value, join."""
    encoded = sorted((percent_encode(name), percent_encode(value)) for name, value in params)
    return "&".join(f"{name}={value}" for name, value in encoded)


def signature_base_string(method: str, uri: str, params: Iterable[tuple[str, str]]) -> str:
    """``METHOD&enc(uri)&enc(normalized parameters)``."""
    return "&".join(
        (method.upper(), percent_encode(uri), percent_encode(normalized_parameters(params)))
    )


def hmac_sha256(base_string: str, consumer_secret: str, token_secret: str = "") -> str:
    """Base64 of HMAC-SHA256 keyed with ``enc(consumer secret)&enc(token secret)``."""
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"
    digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def parse_authorization(header: str) -> dict[str, str]:
    """The parameters of ``Authorization: OAuth name="value", ...`` (RFC 5849 3.5.1), decoded.

    Raises ``MalformedHeader`` for another scheme, a parameter without ``=`` or one given twice.
    """
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "oauth":
        raise MalformedHeader("the Authorization header does not use the OAuth scheme")
    params: dict[str, str] = {}
    for part in rest.split(","):
        item = part.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise MalformedHeader(f"OAuth parameter {name.strip()!r} has no value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        name = unquote(name.strip())
        if name in params:
            raise MalformedHeader(f"OAuth parameter {name!r} is duplicated")
        params[name] = unquote(value)
    return params


def signed_parameters(
    oauth_params: dict[str, str], other_params: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The base string's parameters: oauth_* but the signature (and realm), plus the rest."""
    own = [(k, v) for k, v in oauth_params.items() if k not in {"oauth_signature", "realm"}]
    return own + list(other_params)


def signatures_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())
