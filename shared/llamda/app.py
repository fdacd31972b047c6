"""create_app(config, apis=[...]) → the FastAPI app. The local server mounts every enabled API;
each Lambda function mounts only the APIs it serves."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from llamda import __version__
from llamda.api import bounds
from llamda.api.errors import ErrorResponse
from llamda.auth import AuthMiddleware
from llamda.config import RunConfig, cached_config
from llamda.context import current_principal, current_request_id
from llamda.errors import BadRequestError, ConfigError, LlamdaError, PermissionDeniedError
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
    "agents": "llamda.routers.agents",
    "eval": "llamda.routers.eval",
    "batches": "llamda.routers.batches",
}

# API name → the stack services its routes use. create_app builds these (and what they use)
# when the app is built, as part of a Lambda function's init (which SnapStart snapshots), never
# in the middle of a first request or stream; the services of APIs a function does not serve
# are never imported there. Auth (keys, limiter) serves every API.
SERVICES: dict[str, tuple[str, ...]] = {
    "inspect": ("inspect",),
    "models": ("models",),
    "inference": ("inference", "chat_store"),
    "safety": ("safety", "shields"),
    "files": ("files", "uploads"),
    "vector_io": ("vector_stores",),
    "agents": ("responses", "conversations", "prompts"),
    "eval": ("eval", "datasets", "scoring"),
    "batches": ("batches",),
}

_HTTP_ERRORS: dict[int, tuple[str, str]] = {
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
}


def _error_response(error: LlamdaError) -> JSONResponse:
    return JSONResponse(error.to_dict(), status_code=error.status_code, headers=error.headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None, str]:
    """The message, param and code of a 400 for a request that failed validation: each
    problem as ``field: what is wrong``, without pydantic's union-branch names."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return (
            f"Malformed JSON body: {first.get('ctx', {}).get('error', first['msg'])}",
            None,
            "invalid_json",
        )
    problems = _best_errors(
        [
            _Problem(
                _without_source(tuple(e["loc"])),
                e["msg"],
                e["type"],
            )
            for e in errors
        ]
    )
    parts = [f"{_param(p.loc) or 'body'}: {_readable(p.msg)}" for p in problems[:5]]
    # An unknown field is refused, never passed on unvalidated (see api/inference.py).
    unknown = bool(problems) and problems[0].type == "extra_forbidden"
    code = "unknown_parameter" if unknown else "invalid_value"
    return "; ".join(parts), _param(problems[0].loc) if problems else None, code


@dataclass(frozen=True)
class _Problem:
    loc: tuple[str | int, ...]
    msg: str
    type: str


# Errors that only say "this union branch is the wrong shape".
_MISMATCH = {"literal_error", "missing", "extra_forbidden", "union_tag_invalid", "is_instance_of"}
# No "bytes": here it is a field name (an Upload's declared size), never a field's type.
_PRIMITIVE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict", "any"}


def _is_mismatch(problem: _Problem) -> bool:
    return problem.type in _MISMATCH or problem.type.endswith("_type")


@cache
def _model_names() -> frozenset[str]:
    """Names of the pydantic models (pydantic names union branches by them). Models are
    defined at import; generic ones created later carry ``[`` and are recognised anyway."""
    names: set[str] = set()
    todo = [BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__name__ not in names:
                names.add(sub.__name__)
                todo.append(sub)
    return frozenset(names)


# pydantic-core's names for constrained branches (``constrained-str``, ``lax-int``...).
_SCHEMA_TAG_PREFIXES = ("constrained-", "function-", "lax-", "strict-", "nullable", "json-or-")


def _tag_index(loc: tuple[str | int, ...], models: frozenset[str]) -> int | None:
    """Where pydantic named a union branch in ``loc`` (``function-after[...]``,
    ``CompoundFilter``, ``str``...), if it did."""
    for i, part in enumerate(loc):
        if isinstance(part, str) and (
            "[" in part
            or "(" in part
            or part in _PRIMITIVE_TAGS
            or part in models
            or part.startswith(_SCHEMA_TAG_PREFIXES)
        ):
            return i
    return None


def _best_errors(problems: list[_Problem], models: frozenset[str] | None = None) -> list[_Problem]:
    """For each union, only the errors of the branch the input came closest to (one with a
    real complaint, else the fewest errors); a value matching no branch's type gets one
    "should be X or Y" message."""
    models = _model_names() if models is None else models
    out: list[_Problem] = []
    unions: dict[tuple[str | int, ...], dict[str | int, list[_Problem]]] = {}
    for problem in problems:
        i = _tag_index(problem.loc, models)
        if i is None:
            out.append(problem)
            continue
        branch = problem.loc[:i] + problem.loc[i + 1 :]
        unions.setdefault(problem.loc[:i], {}).setdefault(problem.loc[i], []).append(
            _Problem(branch, problem.msg, problem.type)
        )
    for prefix, branches in unions.items():
        resolved = [_best_errors(errs, models) for errs in branches.values()]
        flat = [p for errs in resolved for p in errs]
        if all(_is_mismatch(p) and p.loc == prefix for p in flat):
            wanted = dict.fromkeys(p.msg.removeprefix("Input should be ") for p in flat)
            out.append(_Problem(prefix, "Input should be " + " or ".join(wanted), "union"))
            continue
        out.extend(min(resolved, key=lambda errs: (all(_is_mismatch(p) for p in errs), len(errs))))
    return out


def _without_source(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The field's path without FastAPI's leading ``body``/``query``/``path``/``header``."""
    return loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc


def _param(loc: tuple[str | int, ...]) -> str | None:
    """``chunks[0].embedding``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def _readable(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


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
            # Starlette's own ``Allow`` (that route's methods only) is replaced, not repeated.
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
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


def _api_routes(routes: Sequence[BaseRoute]) -> list[APIRoute]:
    """The APIRoutes of a router, those of routers it includes too (FastAPI keeps an included
    router as one route, not its routes; none is included with a prefix)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif (inner := getattr(route, "original_router", None)) is not None:
            found += _api_routes(inner.routes)
    return found


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


def _add_metrics_route(app: FastAPI, stack: Stack) -> None:
    from fastapi.responses import PlainTextResponse

    from llamda.observability import local_metrics

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        """Prometheus text format: requests, latencies, tokens, fallbacks, guardrail blocks,
        and circuit breakers (1 while a model's breaker is open or half-open). They span every
        tenant: with auth on, admin keys only."""
        principal = current_principal()
        if principal is not None and not principal.is_admin:
            raise PermissionDeniedError(
                "metrics span every tenant: admin role required", code="admin_required"
            )
        breakers = {
            (("model", model), ("provider", provider_id)): float(state["state"] != "closed")
            for provider_id in stack.config.provider_ids("inference")
            for model, state in stack.inference.breaker_states(provider_id).items()
        }
        return PlainTextResponse(
            local_metrics.render({"breaker_open": breakers}),
            media_type="text/plain; version=0.0.4",
        )


async def _maintenance_loop(stack: Stack, interval: float) -> None:
    """The local server's maintenance step, every ``interval`` seconds, off the request path."""
    while True:
        await asyncio.sleep(interval)
        try:
            await stack.vector_stores.maintain()
            await stack.records.purge_expired()
        except Exception:
            logging.getLogger(__name__).warning("maintenance failed", exc_info=True)


DOCS_ASSETS = "/docs/assets"


def _docs_assets() -> Path | None:
    """Swagger UI's files from the fastapi-offline package (the `server` extra), so /docs
    renders without reaching a CDN; None where it is not installed (then FastAPI's CDN page)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    static = Path(spec.origin).parent / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def _add_offline_docs(app: FastAPI, assets: Path) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )


def create_app(config: RunConfig | None = None, apis: Sequence[str] | None = None) -> FastAPI:
    """Build the app for ``apis`` (default: every API the config enables)."""
    config = config or cached_config()
    wanted = list(apis or config.apis)
    for api in wanted:
        if api not in ROUTERS:
            raise ConfigError(
                f"api {api!r} is not available in this build (available: {', '.join(ROUTERS)})"
            )
    bounds.configure(max_query_chars=config.server.max_query_chars)
    stack = Stack(config)
    for service in ("keys", "limiter", *(s for api in wanted for s in SERVICES.get(api, ()))):
        getattr(stack, service)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Only a server with a lifespan runs this (the Lambda adapter has it off: there the
        # ingest and maintenance functions do the upkeep).
        # Models the providers name, asked once at start (bounded) rather than on the first
        # request.
        await stack.discovery.ensure()
        interval = config.server.maintenance_interval_seconds
        upkeep = asyncio.create_task(_maintenance_loop(stack, interval)) if interval else None
        yield
        if upkeep is not None:
            upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upkeep
        await stack.close()

    assets = _docs_assets()
    app = FastAPI(
        title="Llamda",
        version=__version__,
        description="Llama Stack APIs, served serverlessly on AWS.",
        docs_url=None if assets else "/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    if assets:
        _add_offline_docs(app, assets)
    app.state.stack = stack
    app.state.apis = wanted
    install_error_handlers(app)
    app.state.api_routes = []
    # Key management rides with inspect (the control function in AWS); admin role only.
    # Inference first: Starlette tries routes in order, and chat calls are the hot path (~13%
    # of a chat call's server CPU went to matching a dozen routes before it).
    modules = [ROUTERS[api] for api in sorted(wanted, key=lambda api: api != "inference")]
    if "inspect" in wanted:
        modules.append("llamda.routers.admin")
    for module in modules:
        router = importlib.import_module(module).router
        app.include_router(router)
        app.state.api_routes += _api_routes(router.routes)
    app.openapi = lambda: _openapi_with_error_shape(app)  # type: ignore[method-assign]
    # Added last = outermost: the request id is bound before the size check answers.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=config.server.max_body_bytes,
        upload_bytes=config.server.max_file_bytes,
    )
    # Auth runs before the body is read: an unauthenticated caller cannot make us buffer it.
    app.add_middleware(
        AuthMiddleware, mode=config.server.auth, keys=stack.keys, limiter=stack.limiter
    )
    # Outside Lambda (which reports through EMF) requests also feed the local /metrics.
    in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    app.add_middleware(RequestContextMiddleware, local_metrics=not in_lambda)
    return app


_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def create_local_app(config: RunConfig, bind_host: str | None = None) -> FastAPI:
    """The app as ``llamda serve`` runs it: :func:`create_app` behind the browser guard
    (trusted Host, cross-origin refusal, CORS for ``server.allowed_origins``). The Lambda
    functions sit behind API Gateway and never mount these checks."""
    from starlette.middleware.cors import CORSMiddleware

    from llamda.middleware import BrowserGuardMiddleware

    app = create_app(config)
    _add_metrics_route(app, app.state.stack)
    server = config.server
    hosts = list(server.allowed_hosts)
    if bind_host and bind_host not in _WILDCARD_BINDS:
        # Bound to one address: requests naming it are for us.
        hosts.append(f"[{bind_host}]" if ":" in bind_host else bind_host)
    if server.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=server.allowed_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id", "x-llamda-provider", "x-llamda-model"],
        )
    # Just inside the request-context middleware: its errors carry the request id, and it
    # runs before the body is read.
    index = next(i for i, m in enumerate(app.user_middleware) if m.cls is RequestContextMiddleware)
    app.user_middleware.insert(
        index + 1,
        Middleware(
            BrowserGuardMiddleware,
            allowed_hosts=tuple(hosts),
            allowed_origins=tuple(server.allowed_origins),
        ),
    )
    return app


__all__ = ["ROUTERS", "create_app", "create_local_app", "current_request_id"]
