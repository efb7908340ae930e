"""The one check of a bearer token, shared by the gRPC servers (metadata `authorization`) and the
query service's HTTP side (header `Authorization`): `Bearer <token>`, compared in constant time."""

from __future__ import annotations

import hmac

from fashionrag.errors import Unauthenticated

SCHEME = "Bearer"


def header_value(token: str) -> str:
    """What a caller sends as `authorization` to present `token`."""
    return f"{SCHEME} {token}"


def check_bearer(header: str | None, token: str) -> Unauthenticated | None:
    """Why `header` (an `authorization` value, None when absent) does not present `token`, or
    None when it does (or when `token` is empty: no token is asked for).

    The scheme is matched case-insensitively (RFC 9110); the token itself with
    `hmac.compare_digest`, so that the time taken does not tell how much of a guess was right.
    """
    if not token:
        return None
    if not header:
        return Unauthenticated(
            f"a bearer token is required: send `authorization: {SCHEME} <token>`",
            reason="TOKEN_MISSING",
        )
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != SCHEME.lower() or not given.strip():
        return Unauthenticated(
            f"the authorization is not a bearer token: send `authorization: {SCHEME} <token>`",
            reason="TOKEN_MISSING",
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return Unauthenticated("the bearer token is wrong", reason="TOKEN_INVALID")
    return None
