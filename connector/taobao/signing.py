"""TOP request signing: pure functions, no I/O.

The algorithm (TOP doc 101617, matched by the official Java, Python and Go SDKs):

1. take every request parameter except ``sign`` (and file parameters, which we never send),
2. sort them by name in byte order and concatenate ``name + value`` with no separator,
3. digest the UTF-8 bytes: ``md5(secret + s + secret)``, ``HMAC-MD5(secret, s)`` (``hmac``)
   or ``HMAC-SHA256(secret, s)`` (``hmac-sha256``),
4. upper-case hex.

Empty values are left out of both the request and the signature: how the real gateway signs
an empty parameter is not confirmed, so the client never sends one (``drop_empty``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Final, Literal

__all__ = ["SIGN_METHODS", "SignMethod", "drop_empty", "sign", "signing_string", "verify"]

SignMethod = Literal["md5", "hmac", "hmac-sha256"]
SIGN_METHODS: Final[tuple[SignMethod, ...]] = ("md5", "hmac", "hmac-sha256")


def drop_empty(params: Mapping[str, str]) -> dict[str, str]:
    """Remove parameters whose value is empty or blank, as the official Java SDK does."""
    return {k: v for k, v in params.items() if k and v.strip()}


def signing_string(params: Mapping[str, str]) -> str:
    """The concatenation that is digested: sorted ``name + value`` pairs, ``sign`` excluded."""
    return "".join(f"{name}{params[name]}" for name in sorted(params) if name != "sign")


def sign(params: Mapping[str, str], secret: str, method: SignMethod) -> str:
    """Return the upper-case hex signature of ``params`` for ``method``."""
    text = signing_string(params).encode("utf-8")
    key = secret.encode("utf-8")
    if method == "md5":
        # md5 here is TOP's protocol, not a security choice of ours.
        return hashlib.md5(key + text + key, usedforsecurity=False).hexdigest().upper()
    if method == "hmac":
        return hmac.new(key, text, hashlib.md5).hexdigest().upper()
    if method == "hmac-sha256":
        return hmac.new(key, text, hashlib.sha256).hexdigest().upper()
    raise ValueError(f"unknown sign_method {method!r}; expected one of {', '.join(SIGN_METHODS)}")


def verify(params: Mapping[str, str], secret: str) -> bool:
    """Check ``params['sign']`` the way the gateway does (constant-time comparison)."""
    method = params.get("sign_method", "md5")
    given = params.get("sign", "")
    if method not in SIGN_METHODS or not given:
        return False
    expected = sign(params, secret, method)
    # Bytes, not str: compare_digest refuses non-ASCII text, and a garbage sign must be False.
    return hmac.compare_digest(expected.encode("ascii"), given.upper().encode("utf-8"))
