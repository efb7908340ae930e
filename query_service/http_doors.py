"""The query service's HTTP doors: security headers on every response, and the bearer token.

With a token, the JSON API (/api/*) and the images (/images/*) answer 401 with a JSON body and
`WWW-Authenticate: Bearer` unless the request carries `Authorization: Bearer <token>`; the
gallery page and its scripts and style (/static/*) stay open (the page asks for the token and
keeps it in the tab's sessionStorage: static/auth.js), and so does /healthz, for probes. Any
other path is closed too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from fashionrag.bearer import check_bearer
from fashionrag.errors import json_body

# The gallery loads its script, style and images from this origin only (images as blob: URLs
# when fetched with the token), runs no inline code, and may not be framed (clickjacking).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors' twin, for browsers without CSP level 2
    "Referrer-Policy": "no-referrer",
}
OPEN_PATHS = frozenset({"/", "/healthz"})
OPEN_PREFIXES = ("/static/",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response (errors, files and aiohttp's own 404s included) gets SECURITY_HEADERS."""
    response.headers.update(SECURITY_HEADERS)


def bearer_token(token: str) -> Middleware:
    """A middleware that refuses every request outside OPEN_PATHS and OPEN_PREFIXES without the
    bearer `token`."""

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        error = check_bearer(request.headers.get("Authorization"), token)
        if error is None:
            return await handler(request)
        challenge = 'Bearer realm="fashionrag"'
        if error.reason == "TOKEN_INVALID":
            challenge += ', error="invalid_token"'  # RFC 6750: a token was sent, and is wrong
        return web.json_response(
            json_body(error), status=error.http_status, headers={"WWW-Authenticate": challenge}
        )

    return require_token


def install_doors(app: web.Application, auth_token: str = "") -> None:
    """Add the security headers to `app`, and the token check when `auth_token` is set (before
    any other middleware: a refused request does no work)."""
    app.on_response_prepare.append(add_security_headers)
    if auth_token:
        app.middlewares.insert(0, bearer_token(auth_token))
