"""The query service's HTTP side (same process as gRPC): the JSON API, the indexed images, and the
gallery page. Every route goes through SearchCore; every error is JSON (query_service.http_errors),
uploads are read within limits (query_service.http_uploads), and /images serves only the files
inside the images directory (query_service.image_files).

Nothing here waits behind a search: searches run through the SearchGate (their own threads, a
bounded number in flight), image lookups in a small pool of their own, and /healthz answers from
what the BackendWatcher last saw, on a thread and event loop of its own (query_service.http_front:
a flood of searches keeps the main loop busy)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from aiohttp import web

from fashionrag.errors import InvalidArgument, NotFound
from fashionrag.fashionpedia import CATEGORIES
from query_service.admission import SearchGate
from query_service.backends import BackendWatcher
from query_service.http_doors import install_doors
from query_service.http_errors import JsonErrorRunner, errors_to_json
from query_service.http_front import HttpFront, listen
from query_service.http_metrics import install_metrics
from query_service.http_uploads import UploadReader
from query_service.image_files import ImageFiles
from query_service.json_contract import outcome_dict
from query_service.metrics import QueryMetrics
from query_service.search import SearchCore
from query_service.search_types import SearchQuery

log = logging.getLogger(__name__)

CORE: web.AppKey[SearchCore] = web.AppKey("core", SearchCore)
GATE: web.AppKey[SearchGate] = web.AppKey("gate", SearchGate)
BACKENDS: web.AppKey[BackendWatcher] = web.AppKey("backends", BackendWatcher)
LOOKUPS: web.AppKey[ThreadPoolExecutor] = web.AppKey("lookups", ThreadPoolExecutor)
# Image lookups are one small ChromaDB read each; a gallery page asks for a few dozen at once.
LOOKUP_THREADS = 4
IMAGES: web.AppKey[ImageFiles] = web.AppKey("images", ImageFiles)
UPLOADS: web.AppKey[UploadReader] = web.AppKey("uploads", UploadReader)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 10.0


def _int(value: str | None, name: str, field: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(
            f"{name} must be a whole number, got {value!r}", field=field
        ) from None


def _auto(value: str | None) -> bool | None:
    if value in (None, ""):
        return None
    if value in ("on", "off"):
        return value == "on"
    raise InvalidArgument(f"auto_category must be on or off, got {value!r}", field="category_mode")


async def search_text(request: web.Request) -> web.Response:
    """GET /api/search?q=red+tops&k=10&category=dress&category=coat&colour=red&auto_category=off"""
    q = request.query.get("q")
    if q is None:
        raise InvalidArgument("the q parameter is missing: /api/search?q=red+tops", field="text")
    query = SearchQuery(
        text=q,
        top_k=_int(request.query.get("k"), "k", "top_k"),
        categories=request.query.getall("category", []),
        auto_category=_auto(request.query.get("auto_category")),
        colours=request.query.getall("colour", []),
    )
    outcome = await request.app[GATE].run(request.app[CORE].search, query)
    return web.json_response(outcome_dict(outcome))


async def search_image(request: web.Request) -> web.Response:
    """POST /api/search: an image file as multipart field `image` (k, category and colour fields
    too), or a raw image body with k, category and colour in the query string. Colours are
    refused: an image query ranks whole photos (the same rule as gRPC's)."""
    k = request.query.get("k")
    categories = request.query.getall("category", [])
    colours = request.query.getall("colour", [])
    uploads = request.app[UPLOADS]
    if request.content_type.startswith("multipart/"):
        form = await uploads.form(request)
        upload = form.get("image")
        if not isinstance(upload, web.FileField):
            raise InvalidArgument(
                "send the image as a multipart file field named 'image'", field="image"
            )
        data = upload.file.read()
        k = str(form["k"]) if "k" in form else k
        categories = [str(c) for c in form.getall("category", [])] or categories
        colours = [str(c) for c in form.getall("colour", [])] or colours
    else:
        data = await uploads.body(request)
    query = SearchQuery(
        image=data, top_k=_int(k, "k", "top_k"), categories=categories, colours=colours
    )
    outcome = await request.app[GATE].run(request.app[CORE].search, query)
    return web.json_response(outcome_dict(outcome))


async def image(request: web.Request) -> web.FileResponse:
    """GET /images/<id>: the saved file of an indexed image, found by its record id only, served
    only when it is a regular file inside the images directory."""
    loop = asyncio.get_running_loop()
    record = await loop.run_in_executor(
        request.app[LOOKUPS], request.app[CORE].record, request.match_info["id"]
    )
    path = await loop.run_in_executor(
        request.app[LOOKUPS], request.app[IMAGES].find, record.id, record.path
    )
    return web.FileResponse(path, headers={"Cache-Control": "max-age=3600"})


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: 200 when ChromaDB and the embedder answered their last check (at most about
    a second ago), else 503 saying which is down (`down`: their names, `error`: what was seen);
    answered at once, never waiting on either."""
    problems = request.app[BACKENDS].problems  # one read: the watcher replaces it whole
    if problems:
        body = {
            "status": "unavailable",
            "error": "; ".join(problems.values()),
            "down": list(problems),
        }
        return web.json_response(body, status=503)
    return web.json_response({"status": "ok"})


async def categories(request: web.Request) -> web.Response:
    """GET /api/categories: Fashionpedia's 46 category names."""
    return web.json_response({"categories": list(CATEGORIES)})


async def gallery(request: web.Request) -> web.Response:
    """GET /: the gallery page (one static file, no build step)."""
    page = resources.files("query_service").joinpath("static/index.html").read_text()
    return web.Response(text=page, content_type="text/html")


# The gallery's script, token script and style sheet: files of their own, so that the
# Content-Security-Policy (no inline code) allows them.
STATIC_FILES = {
    "gallery.js": "text/javascript",
    "auth.js": "text/javascript",
    "gallery.css": "text/css",
}


async def static_file(request: web.Request) -> web.Response:
    """GET /static/<name>: one of STATIC_FILES (only those named, no directory)."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise NotFound(f"no static file {name!r}")
    text = resources.files("query_service").joinpath("static", name).read_text()
    return web.Response(text=text, content_type=STATIC_FILES[name])


def make_app(
    core: SearchCore,
    gate: SearchGate,
    backends: BackendWatcher,
    images: ImageFiles,
    *,
    auth_token: str = "",
    metrics: QueryMetrics | None = None,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> web.Application:
    """The HTTP application over one SearchCore, its searches admitted by `gate`, its health
    from `backends`, serving the files of `images`; with `auth_token`, the API and the images
    ask for it (query_service.http_doors); with `metrics`, every request is counted there; an
    upload must arrive within `body_timeout` seconds."""
    app = web.Application(middlewares=[errors_to_json], client_max_size=MAX_UPLOAD_BYTES)
    install_doors(app, auth_token)
    if metrics is not None:
        install_metrics(app, metrics)
    app[CORE] = core
    app[GATE] = gate
    app[BACKENDS] = backends
    app[LOOKUPS] = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="lookup")
    app.on_cleanup.append(_stop_lookups)
    app[IMAGES] = images
    app[UPLOADS] = UploadReader(MAX_UPLOAD_BYTES, body_timeout)
    app.router.add_get("/", gallery)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/api/search", search_text)
    app.router.add_post("/api/search", search_image)
    app.router.add_get("/api/categories", categories)
    app.router.add_get("/images/{id}", image)
    app.router.add_get("/healthz", healthz)
    return app


async def _stop_lookups(app: web.Application) -> None:
    app[LOOKUPS].shutdown(wait=False, cancel_futures=True)


async def _one_answer_per_connection(request: web.Request, response: web.StreamResponse) -> None:
    # The headers are made before this hook runs: say it as well as do it.
    response.force_close()
    response.headers["Connection"] = "close"


def make_health_app(backends: BackendWatcher) -> web.Application:
    """The app of the front door's own thread (query_service.http_front): /healthz only, with
    the main app's error bodies and security headers; a probe's connection closes after its
    answer, so no other request follows it there."""
    app = web.Application(middlewares=[errors_to_json])
    install_doors(app)
    app.on_response_prepare.append(_one_answer_per_connection)
    app[BACKENDS] = backends
    app.router.add_get("/healthz", healthz)
    return app


class HttpServing:
    """The HTTP side while it serves: the front door (the port, and /healthz) and the main app's
    runner."""

    def __init__(self, runner: web.AppRunner, front: HttpFront) -> None:
        self.runner = runner
        self.front = front

    async def cleanup(self) -> None:
        """Stop accepting, then close the main app's connections (as AppRunner.cleanup)."""
        # The front's thread ends after closing its probes' connections: wait for it off this
        # loop, which may have hand-overs from it still to run.
        await asyncio.to_thread(self.front.stop)
        await self.runner.cleanup()


async def start_http(app: web.Application, host: str, port: int) -> HttpServing:
    """Serve `app` (make_app's) on host:port, /healthz by the front door's thread from the app's
    backend watcher; await `cleanup()` on what is returned to stop."""
    runner = JsonErrorRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    try:
        front = HttpFront(
            listen(host, port),
            runner.server,
            asyncio.get_running_loop(),
            make_health_app(app[BACKENDS]),
        )
        front.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("HTTP on http://%s:%d/ (gallery), /api/search, /images/<id>, /healthz", host, port)
    return HttpServing(runner, front)
