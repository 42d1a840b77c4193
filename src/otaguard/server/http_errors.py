"""How errors reach an HTTP client: each ``otaguard.errors`` class has one status, and every
answer, whatever raised it, is ``{"error": code, "detail": text}`` (validation errors add the
first few failing fields). Shared by the framework's handlers and the lean check-in."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from otaguard.errors import (
    AuthError,
    CompatibilityError,
    ConflictError,
    ForbiddenError,
    KeyMaterialError,
    NotFoundError,
    OTAGuardError,
    PayloadTooLargeError,
    RateLimitedError,
    RepositoryError,
    StoreError,
    UnsupportedMediaTypeError,
    VerificationError,
)

_STATUS_OF = {
    UnsupportedMediaTypeError: 415,
    ForbiddenError: 403,
    RateLimitedError: 429,
    AuthError: 401,
    NotFoundError: 404,
    ConflictError: 409,
    CompatibilityError: 422,
    KeyMaterialError: 422,
    VerificationError: 422,
    RepositoryError: 422,
    PayloadTooLargeError: 413,
    StoreError: 400,
}
_HTTP_CODES = {
    400: "bad_request",
    401: "auth",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def error_status(exc: OTAGuardError) -> int:
    """The HTTP status of ``exc``: its nearest class in the table, else 400."""
    for cls in type(exc).__mro__:
        if cls in _STATUS_OF:
            return _STATUS_OF[cls]
    return 400


async def _otaguard_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OTAGuardError)
    return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=error_status(exc))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = [
        {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))[:300]}
        for e in exc.errors()[:20]
    ]
    summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:3])
    return JSONResponse(
        {"error": "validation", "detail": summary or "invalid request", "errors": errors},
        status_code=422,
    )


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http")
    return JSONResponse(
        {"error": code, "detail": str(exc.detail)},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OTAGuardError, _otaguard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
