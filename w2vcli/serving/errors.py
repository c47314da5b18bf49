"""Errors a client can cause, as OpenAI's API words them: `{"error": {"message", "type", "code"}}`.

Every refusal the server makes is an `ApiError` raised anywhere below a route; one handler turns it
into JSON with its status and headers (`Retry-After` on 503). Anything else that escapes a route is
a bug: the client gets a 500 in the same shape, without a traceback, and the server log has it.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("w2vcli.serving")

# OpenAI's `type` per status, so clients that branch on it behave as they do against OpenAI.
TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    500: "server_error",
    503: "server_error",
    504: "server_error",
}


class ApiError(Exception):
    """One refusal: HTTP status, a one-line message that says what to do, a stable machine code."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "message": self.message,
                "type": TYPES.get(self.status, "server_error"),
                "code": self.code,
            }
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (unknown route 404, wrong method 405) in the same shape."""
    status = getattr(exc, "status_code", 500)
    what = {404: "no such route", 405: "method not allowed on this route"}.get(status, "request refused")
    return ApiError(status, f"{what}: {request.method} {request.url.path}", f"http_{status}").response()


async def on_crash(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return ApiError(
        500, "internal server error (the server log has the details)", "internal_error"
    ).response()
