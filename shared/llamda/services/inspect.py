"""Inspect: health, version, routes and providers of this stack."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from llamda import __version__
from llamda.api.inspect import HealthInfo, ProviderInfo, RouteInfo, VersionInfo
from llamda.config import RunConfig
from llamda.context import current_principal
from llamda.errors import NotFoundError
from llamda.redact import mask_config

_LEVELS = ("v1alpha", "v1beta", "v1")
# Which config API's providers serve the routes of an API (models are served by inference).
_PROVIDER_API = {"models": "inference"}


class InspectService:
    def __init__(
        self,
        config: RunConfig,
        breakers: Callable[[str], dict[str, Any]] = lambda _: {},
    ):
        self._config = config
        self._breakers = breakers

    def health(self) -> HealthInfo:
        return HealthInfo(status="OK")

    def version(self) -> VersionInfo:
        return VersionInfo(version=__version__)

    def providers(self) -> list[ProviderInfo]:
        """Every configured provider; secret-bearing config values are masked (generically:
        by key name, value shape and URL credentials — see llamda.redact)."""
        return [
            ProviderInfo(
                api=api,
                provider_id=entry.provider_id,
                provider_type=entry.provider_type,
                config=mask_config(entry.settings.model_dump(mode="json"))
                if entry.settings
                else {},
                health=self._health(api, entry.provider_id),
            )
            for api, entries in self._config.providers.items()
            for entry in entries
        ]

    def _health(self, api: str, provider_id: str) -> dict[str, Any]:
        """Circuit breaker state per provider model, as this process has seen it."""
        breakers = self._breakers(provider_id) if api == "inference" else {}
        if not breakers:
            return {"status": "OK", "message": "no calls seen by this process yet", "breakers": {}}
        status = "OK" if all(b["state"] == "closed" for b in breakers.values()) else "Error"
        principal = current_principal()
        if principal is not None and not principal.is_admin:
            # Breakers are keyed by upstream model ids, which may be another tenant's (a
            # private fine-tune's ARN): members see the verdict, admins the detail.
            return {"status": status, "breakers": {}}
        return {"status": status, "breakers": breakers}

    def provider(self, provider_id: str) -> ProviderInfo:
        for info in self.providers():
            if info.provider_id == provider_id:
                return info
        raise NotFoundError(
            f"provider '{provider_id}' is not configured",
            param="provider_id",
            code="provider_not_found",
        )

    def routes(
        self, routes: Iterable[tuple[str, str, str]], api_filter: str | None = None
    ) -> list[RouteInfo]:
        """``routes`` are (path, method, api) of the mounted app."""
        out = []
        for path, method, api in routes:
            level = next((lv for lv in _LEVELS if path.startswith(f"/{lv}/")), None)
            if api_filter and api_filter != "deprecated" and level != api_filter:
                continue
            if api_filter == "deprecated":
                continue  # nothing of ours is deprecated yet
            provider_api = _PROVIDER_API.get(api, api)
            types = sorted({e.provider_type for e in self._config.providers.get(provider_api, [])})  # type: ignore[call-overload]
            out.append(RouteInfo(route=path, method=method, provider_types=types))
        return sorted(out, key=lambda r: (r.route, r.method))
