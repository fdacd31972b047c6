"""Inspect: health, version, routes and providers of this stack."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamda import __version__
from llamda.api.inspect import HealthInfo, ProviderInfo, RouteInfo, VersionInfo
from llamda.config import LocalObjects, RunConfig
from llamda.context import current_principal
from llamda.errors import NotFoundError
from llamda.redact import mask_config

if TYPE_CHECKING:
    from llamda.storage.objects import Objects
    from llamda.storage.records import Records

_LEVELS = ("v1alpha", "v1beta", "v1")
# Which API's providers serve the routes of a router tag (models are served by inference).
_PROVIDER_API = {"models": "inference", "vector_stores": "vector_io"}


# Llama Stack's names of the providers behind the APIs our storage serves (no run-config entry:
# storage.objects and storage.records are their config).
FILES_LOCAL, FILES_S3 = "inline::localfs", "remote::s3"
DATASETIO_LOCAL, DATASETIO_S3 = "datasetio-localfs", "datasetio-s3"  # services/eval/datasets.py
AGENTS = "inline::builtin"  # Llama Stack 0.7's responses provider
BATCHES = "inline::reference"  # Llama Stack 0.7's batches provider
EVAL = "inline::builtin"  # Llama Stack 0.7's eval provider (benchmarks, jobs)
PROBE_SECONDS = 2.0
_STATIC = {"status": "OK", "message": "no calls seen by this process yet", "breakers": {}}


@dataclass(frozen=True)
class _Listed:
    """One provider as /v1/providers shows it, and how its health is found."""

    api: str
    provider_id: str
    provider_type: str
    config: dict[str, Any]
    probe: Callable[[], Awaitable[dict[str, Any]]]


class InspectService:
    def __init__(
        self,
        config: RunConfig,
        breakers: Callable[[str], dict[str, Any]] = lambda _: {},
        records: Records | None = None,
        objects: Objects | None = None,
        vector_health: Callable[[str], Awaitable[None]] | None = None,
    ):
        self._config = config
        self._breakers = breakers
        self._records = records
        self._objects = objects
        # A vector_io provider's own probe (``VectorIndex.health``), by provider id.
        self._vector_health = vector_health

    def health(self) -> HealthInfo:
        return HealthInfo(status="OK")

    def version(self) -> VersionInfo:
        return VersionInfo(version=__version__)

    async def providers(self) -> list[ProviderInfo]:
        """Every provider behind a served API, with its health; secret-bearing config values
        are masked (generically: by key name, value shape and URL credentials — see
        llamda.redact). ``inspect`` is the stack itself and ``models`` is served by the
        inference providers, as in Llama Stack."""
        listed = self._listed()
        health = await asyncio.gather(*(item.probe() for item in listed))
        return [
            ProviderInfo(
                api=item.api,
                provider_id=item.provider_id,
                provider_type=item.provider_type,
                config=mask_config(item.config),
                health=status,
            )
            for item, status in zip(listed, health, strict=True)
        ]

    async def provider(self, provider_id: str) -> ProviderInfo:
        for item in self._listed():
            if item.provider_id == provider_id:
                return ProviderInfo(
                    api=item.api,
                    provider_id=item.provider_id,
                    provider_type=item.provider_type,
                    config=mask_config(item.config),
                    health=await item.probe(),
                )
        raise NotFoundError(
            f"provider '{provider_id}' is not configured",
            param="provider_id",
            code="provider_not_found",
        )

    def _listed(self) -> list[_Listed]:
        out = []
        for api, entries in self._config.providers.items():
            for entry in entries:
                settings = entry.settings.model_dump(mode="json") if entry.settings else {}
                out.append(
                    _Listed(
                        api,
                        entry.provider_id,
                        entry.provider_type,
                        settings,
                        functools.partial(
                            self._health, api, entry.provider_id, entry.provider_type
                        ),
                    )
                )
        storage = self._config.storage
        if "files" in self._config.apis:
            objects = storage.objects
            local = isinstance(objects, LocalObjects)
            out.append(
                _Listed(
                    "files",
                    "localfs" if local else "s3",
                    FILES_LOCAL if local else FILES_S3,
                    _storage_config(objects.model_dump(mode="json", exclude={"type"})),
                    self._objects_health if local else _not_probed("S3"),
                )
            )
        if "eval" in self._config.apis:
            objects = storage.objects
            local = isinstance(objects, LocalObjects)
            out.append(
                _Listed(
                    "datasetio",
                    DATASETIO_LOCAL if local else DATASETIO_S3,
                    FILES_LOCAL if local else FILES_S3,
                    _storage_config(objects.model_dump(mode="json", exclude={"type"})),
                    self._objects_health if local else _not_probed("S3"),
                )
            )
            judge = {"judge_model": self._config.eval.judge_model}
            for provider_id, settings in (("basic", {}), ("llm-as-judge", judge)):
                out.append(
                    _Listed(
                        "scoring",
                        provider_id,
                        f"inline::{provider_id}",
                        settings,
                        _built_in,
                    )
                )
            # Benchmarks and eval jobs: Llama Stack 0.7's eval provider type; its id is not
            # "builtin", which names the agents provider here.
            out.append(
                _Listed(
                    "eval",
                    "eval-builtin",
                    EVAL,
                    {
                        "runner": "sqs" if self._config.jobs.queue_url else "in-process",
                        "max_sync_rows": self._config.eval.max_sync_rows,
                        "persistence": _storage_config(storage.records.model_dump(mode="json")),
                    },
                    self._records_health,
                )
            )
        if "agents" in self._config.apis:
            out.append(
                _Listed(
                    "agents",
                    "builtin",
                    AGENTS,
                    {"persistence": _storage_config(storage.records.model_dump(mode="json"))},
                    self._records_health,
                )
            )
        if "batches" in self._config.apis:
            out.append(
                _Listed(
                    "batches",
                    "reference",
                    BATCHES,
                    {
                        "runner": "sqs" if self._config.jobs.queue_url else "in-process",
                        "max_requests": self._config.batches.max_requests,
                        "max_file_bytes": self._config.batches.max_file_bytes,
                        "persistence": _storage_config(storage.records.model_dump(mode="json")),
                    },
                    self._records_health,
                )
            )
        return out

    async def _health(self, api: str, provider_id: str, provider_type: str) -> dict[str, Any]:
        if provider_type == "remote::lancedb":
            return await _not_probed("S3")()
        if api == "vector_io" and self._vector_health is not None:
            probe = self._vector_health
            return await _probe(lambda: probe(provider_id))
        if provider_type == "inline::lancedb":
            uri = self._config.storage.vectors.uri
            return await _probe(lambda: asyncio.to_thread(_writable, uri))
        return self._breaker_health(api, provider_id)

    def _breaker_health(self, api: str, provider_id: str) -> dict[str, Any]:
        """Circuit breaker state per provider model, as this process has seen it."""
        breakers = self._breakers(provider_id) if api == "inference" else {}
        if not breakers:
            return dict(_STATIC)
        status, message = _breaker_verdict(breakers.values())
        principal = current_principal()
        if principal is not None and not principal.is_admin:
            # Breakers are keyed by upstream model ids, which may be another tenant's (a
            # private fine-tune's ARN): members see the verdict, admins the detail.
            return {"status": status, "message": message, "breakers": {}}
        return {"status": status, "message": message, "breakers": breakers}

    async def _records_health(self) -> dict[str, Any]:
        """One read of a record that never exists: the table (or SQLite file) answers."""
        records = self._records
        if records is None:
            return dict(_STATIC)
        return await _probe(lambda: records.get("health", "probe"))

    async def _objects_health(self) -> dict[str, Any]:
        """One read of an object that never exists: absent is healthy, anything else is not."""
        objects = self._objects
        if objects is None:
            return dict(_STATIC)

        async def read() -> None:
            with contextlib.suppress(NotFoundError):
                await objects.get("health-probe")

        return await _probe(read)

    def routes(
        self, routes: Iterable[tuple[str, str, str]], api_filter: str | None = None
    ) -> list[RouteInfo]:
        """``routes`` are (path, method, api) of the mounted app."""
        listed = self._listed()
        out = []
        for path, method, api in routes:
            level = next((lv for lv in _LEVELS if path.startswith(f"/{lv}/")), None)
            if api_filter and api_filter != "deprecated" and level != api_filter:
                continue
            if api_filter == "deprecated":
                continue  # nothing of ours is deprecated yet
            provider_api = _PROVIDER_API.get(api, api)
            types = sorted({item.provider_type for item in listed if item.api == provider_api})
            out.append(RouteInfo(route=path, method=method, provider_types=types))
        return sorted(out, key=lambda r: (r.route, r.method))


async def _probe(check: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    """OK when ``check`` finishes within PROBE_SECONDS; else Error naming only the exception's
    type (its text may hold a path, an endpoint or a key)."""
    try:
        await asyncio.wait_for(check(), PROBE_SECONDS)
    except TimeoutError:
        return {"status": "Error", "message": f"no answer within {PROBE_SECONDS:g} s"}
    except Exception as exc:
        return {"status": "Error", "message": f"probe failed: {type(exc).__name__}"}
    return {"status": "OK"}


def _breaker_verdict(breakers: Iterable[dict[str, Any]]) -> tuple[str, str]:
    """``Error`` while any model's circuit is open (or half-open: its trial has not yet
    succeeded), ``Degraded`` while a closed one counts consecutive failures, ``OK`` once
    every model's last attempt succeeded (a success resets the count)."""
    states = list(breakers)
    refusing = sum(b["state"] != "closed" for b in states)
    failing = sum(b["state"] == "closed" and b["consecutive_failures"] > 0 for b in states)
    if refusing:
        return "Error", f"circuit open for {refusing} of {len(states)} models"
    if failing:
        return "Degraded", f"recent consecutive failures on {failing} of {len(states)} models"
    return "OK", f"last calls succeeded on {len(states)} models"


def _writable(location: str) -> None:
    """A local directory the server can write (or create): its nearest existing ancestor."""
    path = Path(location).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    if not (path.is_dir() and os.access(path, os.W_OK | os.X_OK)):
        raise PermissionError("not a writable directory")


async def _built_in() -> dict[str, Any]:
    """Code in this process (scoring functions): nothing to probe."""
    return {"status": "OK", "message": "built in"}


def _not_probed(service: str) -> Callable[[], Awaitable[dict[str, Any]]]:
    """Remote storage is not probed from here: the API functions that read it may, but this one
    (the control function in AWS) has no access to the bucket, and a request must not buy an
    S3 call. Llama Stack's status for a provider without a check."""

    async def status() -> dict[str, Any]:
        return {"status": "Not Implemented", "message": f"{service} is not probed by this API"}

    return status


def _storage_config(settings: dict[str, Any]) -> dict[str, Any]:
    """Where the stack keeps every tenant's data (bucket, table, paths): admins see it, members
    only its kind."""
    principal = current_principal()
    if principal is not None and not principal.is_admin:
        return {key: value for key, value in settings.items() if key == "type"}
    return settings
