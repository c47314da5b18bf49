"""The HTTP app of `w2v serve`: OpenAI's `POST /v1/audio/transcriptions`, `GET /v1/models`, `GET /health`.

Why Starlette on uvicorn rather than FastAPI: the API is three routes whose request is a multipart
form and whose answers are fixed shapes (schemas.py), so FastAPI's added layer (pydantic models,
dependency injection, OpenAPI generation) would be import time and indirection without use; FastAPI
is Starlette underneath, so the request path is the same code minus that layer. Starlette's
multipart parser (python-multipart) streams, which the upload limit needs; uvicorn gives graceful
shutdown on SIGTERM (in-flight requests finish, then the app's lifespan stops the batcher).

A request's path: auth (a pure ASGI guard, before any body byte is read) -> admission (at most
`max_queue` requests uploading, queued or running, else 503 + Retry-After) -> Content-Type (415) and
Content-Length (413) checks -> the multipart body streamed and counted (413 past the limit), held in
memory (never spooled to disk) -> decoded in a worker thread (400/415) -> the batcher -> the answer.
Memory is therefore bounded by max_queue x (max upload + max_seconds of float32 audio).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from w2vcli.serving.audio import decode_upload, shown_name
from w2vcli.serving.batcher import Batcher, NotReady, Overloaded
from w2vcli.serving.errors import ApiError, on_api_error, on_crash, on_http_error
from w2vcli.serving.schemas import parse_request, response

MAX_FIELD_BYTES = 64 * 1024  # a non-file form field (response_format, prompt, ...)


@dataclass(frozen=True)
class ServeLimits:
    max_upload_bytes: int = 25 * 1024 * 1024  # OpenAI's own limit
    max_seconds: float = 600.0  # audio per request
    timeout: float = 600.0  # seconds a request may wait for its transcription (504 after)


class _Guard:
    """Pure ASGI: every route but /health needs `Authorization: Bearer KEY` when a key is set."""

    def __init__(self, app, api_key: str | None):
        self.app, self.key = app, (api_key or "").encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.key and scope["path"] != "/health":
            auth = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                what = "wrong API key" if auth else "missing API key"
                err = ApiError(401, f"{what}: send the header 'Authorization: Bearer KEY'", "invalid_api_key")
                err.headers["WWW-Authenticate"] = "Bearer"
                return await err.response()(scope, receive, send)
        return await self.app(scope, receive, send)


class _Admission:
    """Counts requests between their first byte and their answer; refuses past `limit`."""

    def __init__(self, limit: int, batcher: Batcher):
        self.limit, self.batcher, self.active = limit, batcher, 0

    @contextlib.contextmanager
    def slot(self):
        if self.active >= self.limit:
            raise _overloaded(self.batcher.retry_after())
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


def _overloaded(retry_after: int) -> ApiError:
    return ApiError(
        503, f"server busy: too many requests in progress; retry after {retry_after} s", "server_overloaded",
        {"Retry-After": str(retry_after)},
    )  # fmt: skip


async def _read_form(request: Request, limit: int) -> FormData:
    """The multipart body, streamed with a byte count: refused (413) from Content-Length when it
    announces too much, else as soon as the count passes the limit. Files stay in memory."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ApiError(
            415, f"Content-Type '{shown_name(ctype)}': send multipart/form-data", "unsupported_media_type"
        )
    too_large = ApiError(
        413,
        f"upload larger than this server's limit of {limit / 2**20:.3g} MiB; send a shorter file",
        "file_too_large",
    )
    try:
        if int(request.headers.get("content-length", "0")) > limit:
            raise too_large
    except ValueError:
        raise ApiError(400, "Content-Length is not a number", "invalid_content_length") from None

    async def counted():
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                raise too_large
            yield chunk

    parser = MultiPartParser(
        request.headers, counted(), max_files=1, max_fields=32, max_part_size=MAX_FIELD_BYTES
    )
    parser.spool_max_size = limit + 1  # never rolls over to a file: the count stops the body first
    try:
        return await parser.parse()
    except MultiPartException as e:
        raise ApiError(400, f"malformed multipart body: {e}", "invalid_multipart") from None


def create_app(batcher: Batcher, limits: ServeLimits = ServeLimits(), api_key: str | None = None):
    """The ASGI app. Its lifespan starts the batcher (which loads the model) and, at shutdown, after
    uvicorn has let the requests in flight finish, stops it."""
    admission = _Admission(batcher.limits.max_queue, batcher)
    batcher.in_progress = lambda: admission.active

    async def transcriptions(request: Request) -> Response:
        try:
            with admission.slot():
                if not batcher.ready.is_set():
                    raise ApiError(503, f"not ready: {batcher.load_error or 'loading the model'}", "not_ready",
                                   {"Retry-After": "5"})  # fmt: skip
                form = await _read_form(request, limits.max_upload_bytes)
                req = parse_request(form)
                data = await req.file.read()
                await form.close()
                name = shown_name(req.file.filename)
                wav = await run_in_threadpool(decode_upload, data, req.file.filename, limits.max_seconds)
                del data
                result = await _transcribe(batcher, wav, name, limits.timeout)
        except ClientDisconnect:  # the client left mid-upload: nobody to answer
            return Response(status_code=400)
        if result.error is not None:
            raise ApiError(400, f"{name}: {result.error}", "invalid_audio")
        return response(result, req)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [_model_card(batcher)]})

    async def model(request: Request) -> Response:
        if request.path_params["model"] != batcher.model_name:
            raise ApiError(404, f"no model '{shown_name(request.path_params['model'])}'; this server runs "
                           f"'{batcher.model_name}'", "model_not_found")  # fmt: skip
        return JSONResponse(_model_card(batcher))

    async def health(request: Request) -> Response:
        if batcher.ready.is_set() and batcher.alive:
            return JSONResponse(
                {"status": "ok", "model": batcher.model_name, "in_progress": admission.active}
            )
        status = "failed" if batcher.load_error else ("stopped" if batcher.ready.is_set() else "loading")
        body = {"status": status} | ({"error": batcher.load_error} if batcher.load_error else {})
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            await run_in_threadpool(batcher.stop)

    app = Starlette(
        routes=[
            Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model:path}", model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error, Exception: on_crash},
        lifespan=lifespan,
    )
    return _Guard(app, api_key)


async def _transcribe(batcher: Batcher, wav, name: str, timeout: float):
    try:
        future = batcher.submit(wav, name)
    except Overloaded as e:
        raise _overloaded(e.retry_after) from None
    except NotReady as e:
        raise ApiError(503, f"not ready: {e}", "not_ready", {"Retry-After": "5"}) from None
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except asyncio.TimeoutError:
        future.cancel()  # still queued: dropped; already running: its result is discarded
        raise ApiError(
            504, f"transcription took longer than {timeout:g} s; send shorter audio", "timeout"
        ) from None


def _model_card(batcher: Batcher) -> dict:
    return {"id": batcher.model_name, "object": "model", "created": 0, "owned_by": "w2vcli"}
