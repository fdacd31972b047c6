"""create_app(config, apis=[...]) → the FastAPI app. The local server mounts every enabled API;
each Lambda function mounts only the APIs it serves."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from llamda import __version__
from llamda.api.errors import ErrorResponse
from llamda.config import RunConfig, cached_config
from llamda.context import current_request_id
from llamda.errors import BadRequestError, ConfigError, LlamdaError
from llamda.middleware import BodyLimitMiddleware, RequestContextMiddleware
from llamda.stack import Stack

# API name → router module. An API listed in the config but missing here is not built yet.
ROUTERS: dict[str, str] = {
    "inspect": "llamda.routers.inspect",
    "models": "llamda.routers.models",
    "inference": "llamda.routers.inference",
    "safety": "llamda.routers.safety",
    "files": "llamda.routers.files",
    "vector_io": "llamda.routers.vector_stores",
}

_HTTP_ERRORS: dict[int, tuple[str, str]] = {
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
}


def _error_response(error: LlamdaError) -> JSONResponse:
    return JSONResponse(error.to_dict(), status_code=error.status_code)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None, str]:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return (
            f"Malformed JSON body: {first.get('ctx', {}).get('error', first['msg'])}",
            None,
            "invalid_json",
        )
    parts = []
    for err in errors[:5]:
        loc = [str(p) for p in err["loc"] if p not in ("body", "query", "path", "header")]
        parts.append(f"{'.'.join(loc) or 'body'}: {err['msg']}")
    loc = [str(p) for p in first["loc"] if p not in ("body", "query", "path", "header")]
    return "; ".join(parts), ".".join(loc) or None, "invalid_value"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LlamdaError)
    async def _domain(_: Request, exc: LlamdaError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = _validation_message(exc)
        return _error_response(BadRequestError(message, param=param, code=code))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type, code = _HTTP_ERRORS.get(
            exc.status_code, ("invalid_request_error", "http_error")
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            message = f"Unknown route: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            # Starlette names only the first matching route's methods; list them all.
            allowed = _allowed_methods(request.app, request.url.path)
            headers["allow"] = ", ".join(allowed)
            message = (
                f"Method {request.method} not allowed on {request.url.path} "
                f"(allowed: {headers['allow']})"
            )
        else:
            message = str(exc.detail)
        error = LlamdaError(message, code=code)
        error.status_code, error.error_type = exc.status_code, error_type
        return JSONResponse(error.to_dict(), status_code=exc.status_code, headers=headers)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for route in app.state.api_routes:
        if route.path_regex.match(path):
            methods |= route.methods
    return sorted(methods)


def _openapi_with_error_shape(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents 422 validation errors; we answer 400 in the OpenAI error shape."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(
        "ErrorResponse",
        ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}"),
    )
    for name, sub in (
        ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        .get("$defs", {})
        .items()
    ):
        components.setdefault(name, sub)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if "requestBody" in operation:  # every body passes the size limit first
                responses.setdefault(
                    "413",
                    {
                        "description": "Body too large",
                        "content": {"application/json": {"schema": ref}},
                    },
                )
            if responses.pop("422", None) is not None or "400" not in responses:
                responses.setdefault(
                    "400",
                    {
                        "description": "Invalid request",
                        "content": {"application/json": {"schema": ref}},
                    },
                )
    app.openapi_schema = schema
    return schema


async def _maintenance_loop(stack: Stack, interval: float) -> None:
    """The local server's maintenance step, every ``interval`` seconds, off the request path."""
    while True:
        await asyncio.sleep(interval)
        try:
            await stack.vector_stores.maintain()
        except Exception:
            logging.getLogger(__name__).warning("maintenance failed", exc_info=True)


def create_app(config: RunConfig | None = None, apis: Sequence[str] | None = None) -> FastAPI:
    """Build the app for ``apis`` (default: every API the config enables)."""
    config = config or cached_config()
    wanted = list(apis or config.apis)
    for api in wanted:
        if api not in ROUTERS:
            raise ConfigError(
                f"api {api!r} is not available in this build (available: {', '.join(ROUTERS)})"
            )
    stack = Stack(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Only a server with a lifespan runs this (the Lambda adapter has it off: there the
        # ingest and maintenance functions do the upkeep).
        interval = config.server.maintenance_interval_seconds
        upkeep = asyncio.create_task(_maintenance_loop(stack, interval)) if interval else None
        yield
        if upkeep is not None:
            upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upkeep
        await stack.close()

    app = FastAPI(
        title="Llamda",
        version=__version__,
        description="Llama Stack APIs, served serverlessly on AWS.",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.stack = stack
    app.state.apis = wanted
    install_error_handlers(app)
    app.state.api_routes = []
    for api in wanted:
        router = importlib.import_module(ROUTERS[api]).router
        app.include_router(router)
        app.state.api_routes += [r for r in router.routes if isinstance(r, APIRoute)]
    app.openapi = lambda: _openapi_with_error_shape(app)  # type: ignore[method-assign]
    # Added last = outermost: the request id is bound before the size check answers.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=config.server.max_body_bytes,
        upload_bytes=config.server.max_file_bytes,
    )
    app.add_middleware(RequestContextMiddleware)
    return app


__all__ = ["ROUTERS", "create_app", "current_request_id"]
