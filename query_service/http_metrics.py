"""Counting and timing the query service's HTTP requests by route template, method and status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from query_service.metrics import QueryMetrics

# Label values come from these sets only: a path or method a client made up adds no series.
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The probes' route: counting it would drown the requests that do the work.
UNMEASURED_ROUTES = frozenset({"/healthz"})
CLIENT_CLOSED = 499  # nginx's code for a client that left before its answer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_of(request: web.Request) -> str:
    """The template of the route that matched (`/images/{id}`), or UNMATCHED."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def measure_requests(metrics: QueryMetrics) -> Middleware:
    """A middleware that counts each request in `metrics.http_requests` and times it in
    `metrics.http_latency`, whatever answers it (a handler, the error middleware, the token
    check, aiohttp's own 404)."""

    @web.middleware
    async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_of(request)
        if route in UNMEASURED_ROUTES:
            return await handler(request)
        method = request.method if request.method in METHODS else "other"
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            metrics.http_requests.labels(route, method, str(status)).inc()
            metrics.http_latency.labels(route, method).observe(time.perf_counter() - started)

    return measured


def install_metrics(app: web.Application, metrics: QueryMetrics) -> None:
    """Measure every request of `app`: the outermost middleware, so that requests refused by
    another one are counted too."""
    app.middlewares.insert(0, measure_requests(metrics))
