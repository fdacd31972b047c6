"""The composed stack: config, storage and services, built once per process.

Each service is built (and its module imported) the first time something uses it: a Lambda
function imports and builds only what its routes reach, which keeps its cold start short.
Services that call each other are wired through forwarders resolved at call time, so
wiring one never builds the other.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from llamda.config import RunConfig
from llamda.errors import BadRequestError
from llamda.storage.objects import Objects, build_objects
from llamda.storage.records import Records, build_records

if TYPE_CHECKING:
    from llamda.api.inference import ChatCompletion, ChatCompletionRequest
    from llamda.services.agents.conversations import ConversationsService
    from llamda.services.agents.items import ItemStore
    from llamda.services.agents.prompts import PromptsService
    from llamda.services.agents.responses import ResponsesService
    from llamda.services.batches import BatchesService
    from llamda.services.chat_store import ChatStore
    from llamda.services.chunked import ModelSlots
    from llamda.services.discovery import Discovery
    from llamda.services.eval.datasets import DatasetsService
    from llamda.services.eval.evaluate import EvalService
    from llamda.services.eval.scoring import ScoringService
    from llamda.services.files import FilesService
    from llamda.services.inference import InferenceService
    from llamda.services.inspect import InspectService
    from llamda.services.jobs import JobRunner
    from llamda.services.keys import KeysService
    from llamda.services.limits import RateLimiter
    from llamda.services.models import ModelsService
    from llamda.services.safety import SafetyService
    from llamda.services.shields import ShieldsService
    from llamda.services.uploads import UploadsService
    from llamda.services.vector_stores import VectorStoresService


class _Service[T]:
    """A Stack attribute built on first access, once (under the stack's lock: document
    workers and ``asyncio.to_thread`` callers may race for it), then a plain attribute."""

    def __init__(self, build: Callable[[Stack], T]):
        self._build = build
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, stack: None, owner: type) -> _Service[T]: ...
    @overload
    def __get__(self, stack: Stack, owner: type) -> T: ...
    def __get__(self, stack: Stack | None, owner: type) -> T | _Service[T]:
        if stack is None:
            return self
        with stack._lock:
            if self._name not in stack.__dict__:
                stack.__dict__[self._name] = self._build(stack)
        return stack.__dict__[self._name]


def _later(resolve: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    """A callable that looks its target up when called (``resolve()``), not when wired."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return resolve()(*args, **kwargs)

    return call


class Stack:
    """Holds what every API shares. Building it does no I/O: stores connect on first use,
    services are built on first use."""

    def __init__(self, config: RunConfig):
        self.config = config
        self._lock = threading.RLock()
        self.records: Records = build_records(config.storage.records)
        self.objects: Objects = build_objects(config.storage.objects)
        # The configured shields' params are checked at start (a ConfigError then), never on
        # a first request.
        if config.shields:
            from llamda.services.shields import check_configured_shields

            check_configured_shields(config)

    def job_runner(self) -> JobRunner:
        """The job runner with a handler for every job kind, for a process that runs jobs
        others queued (the jobs function): each kind's service registers its handler when
        built, so all of them are built here."""
        for owner in ("responses", "batches", "eval"):
            getattr(self, owner)
        return self.jobs

    def built(self, name: str) -> bool:
        """Whether the service ``name`` has been built in this process."""
        return name in self.__dict__

    @_Service
    def keys(self) -> KeysService:
        from llamda.services.keys import KeysService

        return KeysService(self.records)

    @_Service
    def limiter(self) -> RateLimiter:
        from llamda.services.limits import RateLimiter

        return RateLimiter(self.records)

    @_Service
    def models(self) -> ModelsService:
        from llamda.services.models import ModelsService

        models = ModelsService(self.config, self.records)
        models.shield_exists = _later(lambda: self.shields.exists)
        models.used_by = _later(lambda: self.vector_stores.stores.using_model)
        models.shared_in_use = _later(lambda: self.vector_stores.stores.any_tenant_uses)
        # Models the providers name (auto_register, embedding_model, Bedrock discovery).
        models.discover = _later(lambda: self.discovery.ensure)
        return models

    @_Service
    def files(self) -> FilesService:
        from llamda.services.files import FilesService

        return FilesService(
            self.records,
            self.objects,
            redirect_bytes=self.config.server.content_redirect_bytes,
            on_delete=_later(lambda: self.vector_stores.files.forget_everywhere),
        )

    @_Service
    def uploads(self) -> UploadsService:
        from llamda.services.uploads import UploadsService

        return UploadsService(
            self.records, self.objects, self.files, self.config.server.max_upload_bytes
        )

    @_Service
    def shields(self) -> ShieldsService:
        from llamda.services.shields import ShieldsService, check_shield_params

        shields = ShieldsService(self.config, self.records)
        shields.validate = functools.partial(check_shield_params, self.config)
        return shields

    @_Service
    def safety(self) -> SafetyService:
        from llamda.services.safety import SafetyService

        return SafetyService(self.config, self.shields, self._judge_chat)

    @_Service
    def inference(self) -> InferenceService:
        """Guarded: every chat/completion call through stack.inference applies the shields."""
        from llamda.services.guardrails import Guardrails
        from llamda.services.inference import InferenceService

        guardrails = Guardrails(self.config.guardrails, self.models, self.safety)
        return InferenceService(self.config, self.models, guardrails=guardrails)

    @_Service
    def vector_stores(self) -> VectorStoresService:
        from llamda.services.vector_stores import VectorStoresService

        return VectorStoresService(
            self.config, self.records, self.files, self.models, self.inference, self.objects
        )

    @_Service
    def jobs(self) -> JobRunner:
        from llamda.services.jobs import JobRunner

        return JobRunner(self.config.jobs)

    @_Service
    def agent_items(self) -> ItemStore:
        from llamda.services.agents.items import ItemStore

        return ItemStore(self.records, self.objects)

    @_Service
    def chat_store(self) -> ChatStore:
        """Stored chat completions: the chat router's, never the agents loop's."""
        from llamda.services.chat_store import ChatStore

        return ChatStore(self.agent_items, self.config.inference_store)

    @_Service
    def conversations(self) -> ConversationsService:
        from llamda.services.agents.conversations import ConversationsService

        return ConversationsService(self.records, self.agent_items, self.config.agents)

    @_Service
    def prompts(self) -> PromptsService:
        from llamda.services.agents.prompts import PromptsService

        return PromptsService(self.records)

    @_Service
    def responses(self) -> ResponsesService:
        from llamda.services.agents.responses import ResponsesService

        return ResponsesService(
            self.config.agents,
            self.records,
            self.agent_items,
            self.models,
            self.inference,
            self.vector_stores,
            self.conversations,
            self.prompts,
            self.shields.exists,
            self.jobs,
        )

    @_Service
    def model_slots(self) -> ModelSlots:
        """Bounded concurrency per model for every chunked job in this process."""
        from llamda.services.chunked import ModelSlots

        return ModelSlots(self.config.jobs.max_concurrency_per_model)

    @_Service
    def batches(self) -> BatchesService:
        from llamda.services.batches import BatchesService

        return BatchesService(
            self.config,
            self.records,
            self.objects,
            self.files,
            self.models,
            self.inference,
            self.chat_store,
            self.jobs,
            self.model_slots,
        )

    @_Service
    def discovery(self) -> Discovery:
        from llamda.services.discovery import Discovery

        return Discovery(self.config, self.models, self.inference.pool, self.records)

    @_Service
    def datasets(self) -> DatasetsService:
        from llamda.services.eval.datasets import DatasetsService

        return DatasetsService(
            self.config.eval, self.config.storage.objects, self.records, self.objects, self.files
        )

    @_Service
    def scoring(self) -> ScoringService:
        from llamda.services.eval.scoring import ScoringService

        return ScoringService(
            self.config.eval, self.records, self._guarded_chat, self._check_judge, self.datasets
        )

    @_Service
    def eval(self) -> EvalService:
        from llamda.services.eval.evaluate import EvalService

        return EvalService(
            self.config.eval,
            self.config.jobs,
            self.records,
            self.objects,
            self.jobs,
            self.model_slots,
            self.datasets,
            self.scoring,
            self.models,
            self.inference,
            self.responses,
        )

    @_Service
    def inspect(self) -> InspectService:
        from llamda.services.inspect import InspectService

        return InspectService(
            self.config,
            _later(lambda: self.inference.breaker_states),
            self.records,
            self.objects,
            vector_health=_later(lambda: self.vector_stores.indexes.health),
        )

    async def _judge_chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        """Llama Guard's own call to its model: routed, not guarded again (no recursion)."""
        return (await self.inference.unguarded_chat(request)).value

    async def _guarded_chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        """A scoring judge's call: the guarded, routed chat path, as the chat API's, within
        the per-model bound that batch and eval work share in this process."""
        async with self.model_slots.slot(request.model):
            return (await self.inference.chat(request)).value

    async def _check_judge(self, model_id: str) -> None:
        """404 for an unknown judge model, 400 for one that is not an llm (as chat answers)."""
        model = await self.models.get(model_id)
        if model.model_type != "llm":
            raise BadRequestError(
                f"judge model '{model_id}' is a {model.model_type} model, not an llm",
                param="judge_model",
                code="wrong_model_type",
            )

    async def close(self) -> None:
        """Close what was built (a service never used has nothing open)."""
        for name in ("jobs", "inference", "safety", "vector_stores"):
            if self.built(name):
                await getattr(self, name).close()
        await self.records.close()
        await self.objects.close()
