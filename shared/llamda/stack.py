"""The composed stack: config, storage and services, built once per process."""

from __future__ import annotations

from llamda.api.inference import ChatCompletion, ChatCompletionRequest
from llamda.config import RunConfig
from llamda.errors import BadRequestError
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
from llamda.services.guardrails import Guardrails
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
from llamda.storage.objects import Objects, build_objects
from llamda.storage.records import Records, build_records


class Stack:
    """Holds what every API shares. Building it does no I/O: stores connect on first use."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.records: Records = build_records(config.storage.records)
        self.objects: Objects = build_objects(config.storage.objects)
        self.keys = KeysService(self.records)
        self.limiter = RateLimiter(self.records)
        self.models = ModelsService(config, self.records)
        self.files = FilesService(
            self.records, self.objects, redirect_bytes=config.server.content_redirect_bytes
        )
        self.uploads = UploadsService(
            self.records, self.objects, self.files, config.server.max_upload_bytes
        )
        self.shields = ShieldsService(config, self.records)
        self.models.shield_exists = self.shields.exists
        self.safety = SafetyService(config, self.shields, self._judge_chat)
        self.shields.validate = self.safety.validate_shield
        # Guarded: every chat/completion call through stack.inference applies the shields.
        self.inference = InferenceService(
            config, self.models, guardrails=Guardrails(config.guardrails, self.models, self.safety)
        )
        self.vector_stores = VectorStoresService(
            config, self.records, self.files, self.models, self.inference, self.objects
        )
        self.models.used_by = self.vector_stores.stores.using_model
        self.models.shared_in_use = self.vector_stores.stores.any_tenant_uses
        self.files.on_delete = self.vector_stores.files.forget_everywhere
        self.jobs = JobRunner(config.jobs)
        self.agent_items = ItemStore(self.records, self.objects)
        # Stored chat completions: the chat router's, never the agents loop's.
        self.chat_store = ChatStore(self.agent_items, config.inference_store)
        self.conversations = ConversationsService(self.records, self.agent_items, config.agents)
        self.prompts = PromptsService(self.records)
        self.responses = ResponsesService(
            config.agents,
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
        # Bounded concurrency per model for every chunked job in this process.
        self.model_slots = ModelSlots(config.jobs.max_concurrency_per_model)
        self.batches = BatchesService(
            config,
            self.records,
            self.objects,
            self.files,
            self.models,
            self.inference,
            self.chat_store,
            self.jobs,
            self.model_slots,
        )
        # Models the providers name (auto_register, embedding_model, Bedrock discovery).
        self.discovery = Discovery(config, self.models, self.inference.pool, self.records)
        self.models.discover = self.discovery.ensure
        self.datasets = DatasetsService(
            config.eval, config.storage.objects, self.records, self.objects, self.files
        )
        self.scoring = ScoringService(
            config.eval, self.records, self._guarded_chat, self._check_judge, self.datasets
        )
        self.eval = EvalService(
            config.eval,
            config.jobs,
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
        self.inspect = InspectService(
            config,
            self.inference.breaker_states,
            self.records,
            self.objects,
            vector_health=self.vector_stores.indexes.health,
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
        await self.jobs.close()
        await self.inference.close()
        await self.safety.close()
        await self.vector_stores.close()
        await self.records.close()
        await self.objects.close()
