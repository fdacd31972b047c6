"""Idempotency-Key claims of batch creates, on real SQLite records: a key whose first create
died without a batch (a killed invocation) is taken over by a retry once that create cannot be
running any more; before that a retry is told to wait (409)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest

from llamda.api.batches import CreateBatchRequest
from llamda.config import load_config
from llamda.context import tenant_scope
from llamda.errors import ConflictError
from llamda.services.batches import ABANDONED_CLAIM_SECONDS, IDEMPOTENCY_KIND, request_fingerprint
from llamda.stack import Stack

CONFIG = """
version: 1
apis: [files, batches]
storage:
  records: {{type: sqlite, path: "{home}/r.sqlite3"}}
  objects: {{type: local, root: "{home}/o"}}
  vectors: {{uri: "{home}/v"}}
"""


@pytest.mark.parametrize("age", [ABANDONED_CLAIM_SECONDS + 5, 5])
def test_a_claim_without_its_batch_is_taken_over_only_once_abandoned(
    tmp_path: Path, age: int
) -> None:
    (tmp_path / "run.yaml").write_text(CONFIG.format(home=tmp_path))
    line = {"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}

    async def main() -> None:
        stack = Stack(load_config(tmp_path / "run.yaml"))
        try:
            with tenant_scope("acme"):
                file = await stack.files.create(json.dumps(line).encode(), "i", "batch", None)
                request = CreateBatchRequest(
                    input_file_id=file.id, endpoint="/v1/embeddings", completion_window="24h"
                )
                claim = hashlib.sha256(b"key-1").hexdigest()
                # What a create killed after claiming the key leaves behind.
                await stack.records.put(
                    IDEMPOTENCY_KIND,
                    claim,
                    {
                        "id": claim,
                        "batch_id": "batch_0000000000000000000000000000",
                        "request": request_fingerprint(request),
                        "claimed_at": int(time.time()) - age,
                    },
                )
                if age < ABANDONED_CLAIM_SECONDS:
                    with pytest.raises(ConflictError) as caught:
                        await stack.batches.create(request, "key-1")
                    assert caught.value.code == "idempotency_key_in_use"
                    return
                batch = await stack.batches.create(request, "key-1")
                assert batch.id != "batch_0000000000000000000000000000"
                assert (await stack.batches.create(request, "key-1")).id == batch.id
        finally:
            await stack.close()

    asyncio.run(main())
