"""OpenAI Batches: many requests to one endpoint, from an uploaded JSONL File, run on the job
runner in chunks (services/chunked.py).

Create reads the input File as a stream, one line at a time (never whole; a line over
``batches.max_line_bytes`` is skipped, not buffered), checks each line and stores the lines in
chunk-sized objects: a good line as its request body, a bad one (bad JSON, another url, an
unknown model, ``stream: true``, a duplicate ``custom_id``, a body our request model refuses)
as its error. The chunk loop then calls, per line, the same service methods as the HTTP
endpoints (guardrails, routing, retries and fallbacks apply) inside the model's slot, and
``finish`` writes the output and error Files (purpose ``batch_output``) in input order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ValidationError

from llamda.api.batches import Batch, CreateBatchRequest, ListBatchesResponse
from llamda.api.inference import ChatCompletionRequest, CompletionRequest, EmbeddingsRequest
from llamda.config import RunConfig
from llamda.context import bind_request_id, request_deadline
from llamda.errors import BadRequestError, ConflictError, LlamdaError, NotFoundError
from llamda.observability import logger
from llamda.services.chat_store import ChatStore
from llamda.services.chunked import TERMINAL, ChunkedJobs, ModelSlots
from llamda.services.files import FilesService
from llamda.services.inference import InferenceService
from llamda.services.jobs import JobRunner
from llamda.services.models import ModelsService
from llamda.storage.objects import JOB_LIFECYCLE, Objects
from llamda.storage.records import Record, Records, list_page, save

KIND = "batches"
IDEMPOTENCY_KIND = "batch_idempotency"
# A claimed key without its batch after this long was claimed by a create that died (API
# Gateway gives a create 29 s): a retry takes the key over.
ABANDONED_CLAIM_SECONDS = 120
WINDOW_SECONDS = 24 * 3600
MAX_CUSTOM_ID = 512
REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingsRequest,
}
# Output Files are spooled to disk past this size (finish never holds a whole output).
SPOOL_BYTES = 8 * 1024 * 1024
# Input chunk objects written (or deleted) at once while a create checks the input.
INPUT_WRITES = 8
# Kept back from the request's deadline (in Lambda: BatchesFunction's 28 s) when checking the
# input: time to delete the chunks stored so far and save the failed batch, so a create that
# cannot finish in time answers instead of being killed with its objects left behind.
CHECK_RESERVE_SECONDS = 5.0
# A JSON escape of a UTF-16 surrogate: only then may a parsed line hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def request_fingerprint(request: CreateBatchRequest) -> str:
    """What an idempotent retry must repeat: the body but its key, with sorted keys (a retry
    that rebuilt its metadata object in another order is the same request)."""
    body = json.dumps(request.model_dump(mode="json", exclude={"idempotency_key"}), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def new_batch_id() -> str:
    # Sorts by creation time, so listing pages newest first.
    return f"batch_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def _line_error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


async def _settle(writes: set[asyncio.Task[None]]) -> None:
    """Wait for every write; the first failure is raised once all have ended."""
    results = await asyncio.gather(*writes, return_exceptions=True)
    writes.clear()
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _encodable(item: Any) -> bool:
    """Whether ``item`` is valid Unicode throughout (no lone surrogate)."""
    try:
        json.dumps(item, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


class _WholeFileError(Exception):
    """The input as a whole is unusable: the batch fails with this in ``errors``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class BatchesService:
    def __init__(
        self,
        config: RunConfig,
        records: Records,
        objects: Objects,
        files: FilesService,
        models: ModelsService,
        inference: InferenceService,
        chat_store: ChatStore,
        runner: JobRunner,
        slots: ModelSlots,
    ):
        self._limits = config.batches
        self._chunk_rows = config.jobs.chunk_rows
        self._records = records
        self._objects = objects
        self._files = files
        self._models = models
        self._inference = inference
        self._chat_store = chat_store
        self._slots = slots
        self.jobs = ChunkedJobs(
            KIND,
            records,
            objects,
            runner,
            config.jobs,
            work=self._work,
            finish=self._finish,
            cleanup=self._cleanup,
        )

    # -- the API ----------------------------------------------------------------------------

    async def create(self, request: CreateBatchRequest, header_key: str | None) -> Batch:
        """A new batch (or, for a retried idempotency key, the one it created). The key comes
        from the ``Idempotency-Key`` header (OpenAI, Stripe) or the body's
        ``idempotency_key`` (llama-stack-client)."""
        if header_key and request.idempotency_key and header_key != request.idempotency_key:
            raise BadRequestError(
                "the Idempotency-Key header and the body's idempotency_key differ",
                param="idempotency_key",
            )
        idempotency_key = header_key or request.idempotency_key
        if idempotency_key is None:
            return self._batch(await self._create(request, new_batch_id()))
        claim = hashlib.sha256(idempotency_key.encode()).hexdigest()
        fingerprint = request_fingerprint(request)
        batch_id = new_batch_id()
        now = int(time.time())
        try:
            await self._records.put(
                IDEMPOTENCY_KIND,
                claim,
                {"id": claim, "batch_id": batch_id, "request": fingerprint, "claimed_at": now},
                if_absent=True,
                expires_at=now + self._limits.idempotency_hours * 3600,
            )
        except ConflictError:
            replayed = await self._replay(claim, fingerprint)
            if replayed is not None:
                return replayed
            # The first create died without a batch (a killed invocation): this one takes over.
            await self._records.delete(IDEMPOTENCY_KIND, claim)
            return await self.create(request, header_key)
        try:
            return self._batch(await self._create(request, batch_id))
        except Exception:
            # Nothing was created: the key is free for a corrected retry.
            await self._records.delete(IDEMPOTENCY_KIND, claim)
            raise

    async def _replay(self, claim: str, fingerprint: str) -> Batch | None:
        """The batch an earlier create with this key made; None when that create died
        without making one (its claim is older than any create can run)."""
        earlier = await self._records.get(IDEMPOTENCY_KIND, claim)
        if earlier is None:
            raise ConflictError(
                "a request with this Idempotency-Key is still being processed; retry",
                param="Idempotency-Key",
                code="idempotency_key_in_use",
            )
        if earlier["request"] != fingerprint:
            raise ConflictError(
                "this Idempotency-Key was used with a different request body",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
        record = await self._records.get(KIND, earlier["batch_id"])
        if record is None:
            if int(earlier.get("claimed_at") or 0) < time.time() - ABANDONED_CLAIM_SECONDS:
                return None
            raise ConflictError(
                "a request with this Idempotency-Key is still being processed; retry",
                param="Idempotency-Key",
                code="idempotency_key_in_use",
            )
        return self._batch(record)

    async def get(self, batch_id: str) -> Batch:
        return self._batch(await self._record(batch_id))

    async def cancel(self, batch_id: str) -> Batch:
        record = await self._record(batch_id)
        if record["status"] in (*TERMINAL, "finalizing"):
            if record["status"] == "cancelled":
                return self._batch(record)
            raise ConflictError(
                f"Cannot cancel a batch with status '{record['status']}'.",
                code="batch_not_cancellable",
            )
        return self._batch(await self.jobs.cancel(batch_id) or record)

    async def list(self, *, after: str | None, limit: int) -> ListBatchesResponse:
        if after is not None and not after.startswith("batch_"):
            raise BadRequestError("after must be a batch id", param="after")
        page, has_more = await list_page(
            self._records, KIND, limit=limit, after=after, descending=True
        )
        data = [self._batch(r) for r in page]
        return ListBatchesResponse(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=has_more,
        )

    async def _record(self, batch_id: str) -> Record:
        record = await self._records.get(KIND, batch_id)
        if record is None:
            raise NotFoundError(f"No batch found with id '{batch_id}'.", param="batch_id")
        return record

    @staticmethod
    def _batch(record: Record) -> Batch:
        status = record["status"]
        if status == "queued":
            status = "in_progress"
        errors = record.get("errors")
        if errors is None and record.get("error"):  # the job failed as a whole
            errors = [{**record["error"], "param": None, "line": None}]
        total = int(record.get("rows_total") or 0)
        failed = int(record.get("rows_failed") or 0)
        return Batch.model_validate(
            {
                **{k: v for k, v in record.items() if k in Batch.model_fields},
                "status": status,
                "errors": {"object": "list", "data": errors} if errors else None,
                "request_counts": {
                    "total": total,
                    "completed": int(record.get("rows_done") or 0) - failed,
                    "failed": failed,
                },
            }
        )

    # -- create: check and store the input ----------------------------------------------------

    async def _create(self, request: CreateBatchRequest, batch_id: str) -> Record:
        try:
            file = await self._files.get(request.input_file_id)  # 404 for another tenant's
        except NotFoundError as exc:  # name the field the client sent, not the Files API's
            raise NotFoundError(exc.message, param="input_file_id", code=exc.code) from None
        if file.purpose != "batch":
            raise BadRequestError(
                f"File {file.id} has purpose '{file.purpose}'; a batch's input must be "
                "uploaded with purpose 'batch'.",
                param="input_file_id",
                code="invalid_file_purpose",
            )
        now = int(time.time())
        record: Record = {
            "id": batch_id,
            "endpoint": request.endpoint,
            "input_file_id": request.input_file_id,
            "completion_window": request.completion_window,
            "metadata": request.metadata,
            "created_at": now,
            "expires_at": now + WINDOW_SECONDS,
            "deadline_at": now + WINDOW_SECONDS,
            "chunk_rows": self._chunk_rows,
            "status": "validating",
        }
        try:
            if file.bytes > self._limits.max_file_bytes:
                raise _WholeFileError(
                    "file_too_large",
                    f"The input file is {file.bytes} bytes; a batch accepts at most "
                    f"{self._limits.max_file_bytes}.",
                )
            record["rows_total"] = await self._store_input(record)
        except _WholeFileError as error:
            await self._delete_input(batch_id, 0)
            record.update(
                status="failed",
                failed_at=int(time.time()),
                rows_total=0,
                errors=[{"code": error.code, "message": error.message, "param": None}],
            )
            await self._records.put(KIND, batch_id, record, if_absent=True)
            return record
        except BaseException:
            await self._delete_input(batch_id, 0)
            raise
        record.update(status="in_progress", in_progress_at=int(time.time()))
        try:
            return await self.jobs.start(record)
        except Exception:
            await self._delete_input(batch_id, record["rows_total"])
            raise

    def _input_key(self, batch_id: str, chunk: int) -> str:
        return f"jobs/{KIND}/{batch_id}/input-{chunk:07d}.jsonl"

    async def _store_input(self, record: Record) -> int:
        """Check each line of the input File and store them ``chunk_rows`` to an object; the
        number of lines."""
        rows = int(record["chunk_rows"])
        pending: list[str] = []
        writes: set[asyncio.Task[None]] = set()
        count = 0
        parsed_any = False
        seen: set[bytes] = set()
        known: dict[str, dict[str, Any] | None] = {}
        deadline = request_deadline()
        async for number, line in self._lines(record["input_file_id"]):
            if deadline is not None and time.monotonic() > deadline - CHECK_RESERVE_SECONDS:
                raise _WholeFileError(
                    "validation_timeout",
                    f"The input file could not be checked in the time a create has ({count} "
                    "requests checked); split it into smaller batches.",
                )
            if count >= self._limits.max_requests:
                raise _WholeFileError(
                    "too_many_requests",
                    f"The input file has more than {self._limits.max_requests} requests.",
                )
            entry = await self._check(record["endpoint"], line, seen, known)
            if entry.get("custom_id") is None and "error" in entry:
                # No custom_id to find it by: name the line (1-based, as editors count).
                error = entry["error"]
                entry["error"] = {**error, "message": f"Line {number}: {error['message']}"}
            parsed_any = parsed_any or entry.pop("_parsed", False)
            pending.append(json.dumps(entry, separators=(",", ":")))
            count += 1
            if len(pending) == rows:
                await self._put_input(record["id"], (count - 1) // rows, pending, writes)
                pending = []
        if pending:
            await self._put_input(record["id"], (count - 1) // rows, pending, writes)
        await _settle(writes)
        if count == 0:
            raise _WholeFileError("empty_file", "The input file has no requests.")
        if not parsed_any:
            raise _WholeFileError(
                "invalid_file_format",
                "The input file is not JSONL: no line is a JSON object.",
            )
        return count

    async def _put_input(
        self, batch_id: str, chunk: int, lines: list[str], writes: set[asyncio.Task[None]]
    ) -> None:
        """Store one input chunk, a few writes in flight at once (one S3 round trip per chunk
        in sequence would dominate a large batch's create); a failed write fails the create."""
        while len(writes) >= INPUT_WRITES:
            done, _ = await asyncio.wait(writes, return_when=asyncio.FIRST_COMPLETED)
            writes -= done
            for task in done:
                if task.exception() is not None:
                    await _settle(writes)
                    raise task.exception()  # type: ignore[misc]
        data = "\n".join(lines).encode()
        put = self._objects.put(self._input_key(batch_id, chunk), data, lifecycle=JOB_LIFECYCLE)
        writes.add(asyncio.create_task(put))

    async def _delete_input(self, batch_id: str, rows_total: int) -> None:
        chunks = -(-rows_total // self._chunk_rows) if rows_total else 0
        keys = [self._input_key(batch_id, chunk) for chunk in range(chunks)]
        if not rows_total:  # a failed check may have stored some: whatever is there
            keys = await self._objects.list(f"jobs/{KIND}/{batch_id}")
        # A few at once: one round trip per chunk in sequence would outlast a create's time
        # (a 50,000-line input is 1,000 chunks of 50).
        limit = asyncio.Semaphore(INPUT_WRITES)

        async def delete(key: str) -> None:
            async with limit:
                await self._objects.delete(key)

        await asyncio.gather(*(delete(key) for key in keys))

    async def _lines(self, file_id: str) -> AsyncIterator[tuple[int, bytes | None]]:
        """The File's non-blank lines with their 1-based numbers, read as a stream; a line
        longer than ``max_line_bytes`` is ``None`` (skipped, never held whole)."""
        limit = self._limits.max_line_bytes
        max_lines = 2 * self._limits.max_requests + 1000
        buffer = bytearray()
        too_long = False
        number = 0
        async for piece in self._objects.chunks(f"files/{file_id}"):
            start = 0
            while True:
                end = piece.find(b"\n", start)
                part = piece[start:] if end < 0 else piece[start:end]
                if not too_long:
                    buffer += part
                    if len(buffer) > limit:
                        too_long = True
                        buffer.clear()
                if end < 0:
                    break
                number += 1
                if number > max_lines:
                    # Blank lines cost a pass each too: a file of newlines is bounded as well.
                    raise _WholeFileError(
                        "too_many_requests",
                        f"The input file has more than {max_lines} lines.",
                    )
                if too_long or buffer.strip():
                    yield number, None if too_long else bytes(buffer)
                buffer.clear()
                too_long = False
                start = end + 1
        if too_long or buffer.strip():
            yield number + 1, None if too_long else bytes(buffer)

    async def _check(
        self,
        endpoint: str,
        line: bytes | None,
        seen: set[bytes],
        known: dict[str, dict[str, Any] | None],
    ) -> dict[str, Any]:
        """One stored line: ``{"custom_id", "body"}`` or ``{"custom_id", "error"}``."""
        if line is None:
            return {
                "custom_id": None,
                "error": _line_error(
                    "request_too_large",
                    f"The line is longer than {self._limits.max_line_bytes} bytes.",
                ),
            }
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
            return {
                "custom_id": None,
                "error": _line_error("invalid_json_line", "The line is not valid JSON."),
            }
        if not isinstance(item, dict):
            return {
                "custom_id": None,
                "error": _line_error("invalid_json_line", "The line is not a JSON object."),
            }
        if _SURROGATE_ESCAPE.search(line) and not _encodable(item):
            # A lone surrogate parses but is no text: no id, model or upstream can take it.
            return {
                "custom_id": None,
                "error": _line_error(
                    "invalid_json_line", "The line has an unpaired UTF-16 surrogate escape."
                ),
            }
        custom_id = item.get("custom_id")
        entry: dict[str, Any] = {"_parsed": True, "custom_id": None}
        if not isinstance(custom_id, str) or not 0 < len(custom_id) <= MAX_CUSTOM_ID:
            entry["error"] = _line_error(
                "invalid_custom_id",
                f"custom_id must be a string of 1 to {MAX_CUSTOM_ID} characters.",
            )
            return entry
        entry["custom_id"] = custom_id
        digest = hashlib.blake2b(custom_id.encode(), digest_size=16).digest()
        if digest in seen:
            entry["error"] = _line_error(
                "duplicate_custom_id", f"custom_id '{custom_id}' is used by an earlier line."
            )
            return entry
        seen.add(digest)
        entry["error"] = await self._check_request(endpoint, item, known)
        if entry["error"] is None:
            del entry["error"]
            entry["body"] = item["body"]
        return entry

    async def _check_request(
        self, endpoint: str, item: dict[str, Any], known: dict[str, dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        if item.get("method") != "POST":
            return _line_error("invalid_method", "method must be POST.")
        if item.get("url") != endpoint:
            got = str(item.get("url"))[:100]
            return _line_error(
                "invalid_url", f"url must be the batch's endpoint {endpoint} (got {got!r})."
            )
        body = item.get("body")
        if not isinstance(body, dict):
            return _line_error("invalid_request", "body must be a JSON object.")
        if body.get("stream"):
            return _line_error("streaming_unsupported", "stream: true is not supported in a batch.")
        try:
            parsed = REQUEST_MODELS[endpoint].model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return _line_error("invalid_request", f"body.{where}: {first['msg']}"[:500])
        model = str(getattr(parsed, "model", ""))
        if model not in known:
            try:
                await self._models.get(model)
                known[model] = None
            except LlamdaError as exc:  # unknown, or not even a valid model id
                code = "model_not_found" if isinstance(exc, NotFoundError) else exc.code
                known[model] = _line_error(code or "invalid_request", exc.message)
        return known[model]

    # -- the chunk loop's work ----------------------------------------------------------------

    async def _work(self, record: Record, start: int, end: int) -> list[dict[str, Any]]:
        data = await self._objects.get(self._input_key(record["id"], start // record["chunk_rows"]))
        lines = [json.loads(line) for line in data.splitlines() if line]
        if len(lines) != end - start:
            raise RuntimeError(f"input chunk of batch {record['id']} has {len(lines)} lines")
        return list(await asyncio.gather(*(self._one(record["endpoint"], e) for e in lines)))

    async def _one(self, endpoint: str, entry: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": f"batch_req_{secrets.token_hex(12)}",
            "custom_id": entry.get("custom_id"),
            "response": None,
            "error": entry.get("error"),
        }
        if result["error"] is not None:
            return result
        # Each line is a request of its own (a job run in-process would otherwise inherit the
        # create request's id).
        request_id = f"req_{secrets.token_hex(16)}"
        body = entry["body"]
        try:
            async with self._slots.slot(str(body.get("model"))):
                reply = await self._call(endpoint, body, request_id)
        except LlamdaError as exc:
            # The endpoint's own answer, as the HTTP endpoint would have sent it.
            result["response"] = {
                "status_code": exc.status_code,
                "request_id": request_id,
                "body": exc.to_dict(),
            }
            result["error"] = _line_error(exc.code or exc.error_type, exc.message)
            return result
        except Exception as exc:
            # What the endpoint answers an unexpected failure with: a 500, the reason logged
            # (never its text: it may quote a request).
            logger.exception("batch line failed", error=type(exc).__name__)
            error = LlamdaError("internal error while processing this request")
            result["response"] = {
                "status_code": 500,
                "request_id": request_id,
                "body": error.to_dict(),
            }
            result["error"] = _line_error("server_error", error.message)
            return result
        result["response"] = {"status_code": 200, "request_id": request_id, "body": reply}
        return result

    async def _call(self, endpoint: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        """The HTTP endpoint's own service call for one line (routers/inference.py), under
        the line's request id (logs and metrics name it)."""
        bind_request_id(request_id)
        try:
            request = REQUEST_MODELS[endpoint].model_validate(body)
        except ValidationError as exc:
            raise BadRequestError(str(exc.errors()[0]["msg"])) from None
        if isinstance(request, ChatCompletionRequest):
            served: Any = await self._chat_store.chat(request, await self._inference.chat(request))
        elif isinstance(request, CompletionRequest):
            served = await self._inference.completion(request)
        else:
            assert isinstance(request, EmbeddingsRequest)
            served = await self._inference.embeddings(request)
        return json.loads(served.value.model_dump_json())

    # -- finish: the output and error Files ---------------------------------------------------

    async def _finish(self, record: Record, status: str) -> None:
        logger.info(
            "batch finished",
            batch_id=record["id"],
            status=status,
            rows_total=record.get("rows_total"),
            rows_done=record.get("rows_done"),
            rows_failed=record.get("rows_failed"),
        )
        record.setdefault("finalizing_at", int(time.time()))
        if not record.get("outputs_written"):
            record.update(await self._write_files(record, status), outputs_written=True)
            # Saved before the chunk results go: a finish cut short here is redone from them.
            if not await save(self._records, KIND, record["id"], record):
                raise RuntimeError(f"batch {record['id']} changed while it was finalized")
        await self.jobs.delete_results(record)
        await self._delete_input(record["id"], int(record.get("rows_total") or 0))

    async def _cleanup(self, record: Record) -> None:
        """A batch that failed as a whole keeps nothing in the object store: its finished
        chunks' results and its input chunks would otherwise stay forever (all under its
        prefix)."""
        await self._delete_input(record["id"], 0)

    async def _write_files(self, record: Record, status: str) -> dict[str, Any]:
        """The output and error Files (their ids); an expired batch's requests that never
        ran go to the error File as ``batch_expired``, as OpenAI writes them."""
        made: dict[str, Any] = {}
        with (
            tempfile.SpooledTemporaryFile(SPOOL_BYTES) as out,
            tempfile.SpooledTemporaryFile(SPOOL_BYTES) as err,
        ):
            async for row in self.jobs.results(record):
                target = out if row.get("error") is None else err
                target.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
            if status == "expired":
                expired = 0
                async for entry in self._unstarted(record):
                    row = {
                        "id": f"batch_req_{secrets.token_hex(12)}",
                        "custom_id": entry.get("custom_id"),
                        "response": None,
                        "error": _line_error(
                            "batch_expired",
                            "This request could not be executed before the completion window "
                            "expired.",
                        ),
                    }
                    err.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
                    expired += 1
                # Every request is accounted for: the unstarted ones failed.
                made["rows_failed"] = int(record.get("rows_failed") or 0) + expired
                made["rows_done"] = int(record.get("rows_done") or 0) + expired
            for field, spool, name in (
                ("output_file_id", out, "output"),
                ("error_file_id", err, "error"),
            ):
                if spool.tell():
                    spool.seek(0)
                    file = await self._files.create_from(
                        spool,
                        f"batch_{record['id']}_{name}.jsonl",
                        "batch_output",
                        "application/jsonl",
                    )
                    made[field] = file.id
            return made

    async def _unstarted(self, record: Record) -> AsyncIterator[dict[str, Any]]:
        """The stored input lines of the chunks that never ran, in order."""
        rows = int(record["chunk_rows"])
        chunks = -(-int(record.get("rows_total") or 0) // rows)
        for chunk in range(int(record.get("next_chunk", 0)), chunks):
            data = await self._objects.get(self._input_key(record["id"], chunk))
            for line in data.splitlines():
                if line:
                    yield json.loads(line)
