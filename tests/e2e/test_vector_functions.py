"""The LanceDB image functions, run from the image's task root built from functions/Dockerfile:
the vector stores function with API Gateway events, the ingest function with S3→SQS events.
LanceDB, files and records live in moto (S3, DynamoDB); embeddings come from the fake Bedrock."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tests.e2e.harness import (
    Artifact,
    api_gateway_event,
    lambda_env,
    response_json,
    s3_notification,
    sqs_event,
)
from tests.fakes.bedrock import FakeBedrockServer
from tests.pdf import make_pdf

pytestmark = pytest.mark.e2e
INGEST_BUCKET = "llamda-ingest"


@pytest.fixture
def env(aws_env: dict[str, str], fake_bedrock: FakeBedrockServer) -> dict[str, str]:
    fake_bedrock.fake.reset()
    return {**aws_env, "BEDROCK_ENDPOINT_URL": fake_bedrock.endpoint}


def call(fn: Artifact, env: dict[str, str], *events: dict[str, Any]) -> list[dict[str, Any]]:
    return fn.invoke(list(events), lambda_env(fn, env))["results"]


def proxy(method: str, path: str, body: Any = None) -> dict[str, Any]:
    resource = "/v1/vector_stores/{proxy+}" if path.count("/") > 2 else "/v1/vector_stores"
    if path.startswith("/v1/vector-io"):
        resource = "/v1/vector-io/{proxy+}"
    return api_gateway_event(method, path, resource=resource, body=body)


def create_store(fn: Artifact, env: dict[str, str], name: str) -> str:
    (created,) = call(fn, env, proxy("POST", "/v1/vector_stores", {"name": name}))
    assert created["statusCode"] == 200, created["body"]
    return response_json(created)["id"]


def put(s3: Any, key: str, data: bytes, **extra: Any) -> dict[str, Any]:
    s3.put_object(Bucket=INGEST_BUCKET, Key=key, Body=data, **extra)
    head = s3.head_object(Bucket=INGEST_BUCKET, Key=key)
    return s3_notification(
        "ObjectCreated:Put", INGEST_BUCKET, key, etag=head["ETag"].strip('"'), size=len(data)
    )


def test_image_is_the_dockerfile_and_vector_function_serves(
    image_artifacts: dict[str, Artifact], env: dict[str, str], moto_endpoint: str
) -> None:
    fn = image_artifacts["VectorFunction"]
    assert (fn.paths[0] / "llamda" / "data" / "tokenizer.json").exists()
    store = create_store(fn, env, "e2e")
    chunks = [
        {
            "chunk_id": "a",
            "content": "Vicuñas graze in the high Andes.",
            "metadata": {"document_id": "d1"},
        },
        {
            "chunk_id": "b",
            "content": "Reindeer pull sleds in Lapland.",
            "metadata": {"document_id": "d2"},
        },
    ]
    inserted, queried, searched, missing, bad = call(
        fn,
        env,
        proxy("POST", "/v1/vector-io/insert", {"vector_store_id": store, "chunks": chunks}),
        proxy(
            "POST", "/v1/vector-io/query", {"vector_store_id": store, "query": "sleds in Lapland"}
        ),
        proxy(
            "POST",
            f"/v1/vector_stores/{store}/search",
            {"query": "high Andes", "search_mode": "hybrid"},
        ),
        proxy("GET", "/v1/vector_stores/vs_missing"),
        proxy("POST", f"/v1/vector_stores/{store}/search", {"query": "   "}),
    )
    assert inserted["statusCode"] == 200, inserted["body"]
    assert response_json(queried)["chunks"][0]["chunk_id"] == "b"
    assert response_json(searched)["data"][0]["content"][0]["text"].startswith("Vicuñas")
    assert missing["statusCode"] == 404 and bad["statusCode"] == 400
    assert response_json(bad)["error"]["type"] == "invalid_request_error"
    # The table lives in moto S3 under lancedb/tenants/<tenant>/<store>.lance.
    keys = [
        o["Key"]
        for o in boto3.client("s3", endpoint_url=moto_endpoint)
        .list_objects_v2(Bucket="llamda-data", Prefix="lancedb/")
        .get("Contents", [])
    ]
    assert any(f"/{store}.lance/" in k for k in keys)


def test_ingest_from_s3_events_idempotent_partial_failures_and_removal(
    image_artifacts: dict[str, Artifact], env: dict[str, str], moto_endpoint: str
) -> None:
    vector, ingest = image_artifacts["VectorFunction"], image_artifacts["IngestFunction"]
    store = create_store(vector, env, "ingested")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    good = [
        put(
            s3,
            f"ingest/default/{store}/notes/llamas and alpacas.md",
            b"# Camelids\n\nAlpacas hum softly.",
        ),
        put(
            s3,
            f"ingest/default/{store}/guides/guide.pdf",
            make_pdf(["Guanacos whistle to warn the herd."]),
            Metadata={"attributes": json.dumps({"team": "field", "year": 2024})},
        ),
    ]
    corrupt = put(s3, f"ingest/default/{store}/broken.pdf", b"%PDF-1.7 truncated")
    bodies = [json.dumps(m) for m in [*good, corrupt]]
    batch = sqs_event([*bodies, json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})])
    report = ingest.invoke([batch], lambda_env(ingest, env))
    (result,) = report["results"]
    corrupt_id = batch["Records"][2]["messageId"]
    assert result == {"batchItemFailures": [{"itemIdentifier": corrupt_id}]}

    def chunk_count() -> int:
        (found,) = call(
            vector,
            env,
            proxy(
                "POST",
                "/v1/vector-io/query",
                {"vector_store_id": store, "query": "herd", "params": {"max_chunks": 100}},
            ),
        )
        return len(response_json(found)["chunks"])

    before = chunk_count()
    assert before == 2
    # SQS redelivers the same messages (a new process, as a new container would): no duplicates.
    again = ingest.invoke([sqs_event(bodies[:2])], lambda_env(ingest, env))["results"][0]
    assert again == {"batchItemFailures": []}
    assert chunk_count() == before

    files, searched, filtered = call(
        vector,
        env,
        proxy("GET", f"/v1/vector_stores/{store}/files"),
        proxy("POST", f"/v1/vector_stores/{store}/search", {"query": "guanacos whistle"}),
        proxy(
            "POST",
            f"/v1/vector_stores/{store}/search",
            {"query": "animals", "filters": {"type": "eq", "key": "team", "value": "field"}},
        ),
    )
    statuses = sorted(f["status"] for f in response_json(files)["data"])
    assert statuses == ["completed", "completed", "failed"]
    failed = next(f for f in response_json(files)["data"] if f["status"] == "failed")
    assert failed["last_error"]["code"] == "invalid_file"
    top = response_json(searched)["data"][0]
    assert top["filename"] == "guide.pdf" and "Guanacos" in top["content"][0]["text"]
    assert [r["filename"] for r in response_json(filtered)["data"]] == ["guide.pdf"]

    # ObjectRemoved deletes the chunks; a stale (older) create event cannot bring them back.
    key = f"ingest/default/{store}/notes/llamas and alpacas.md"
    s3.delete_object(Bucket=INGEST_BUCKET, Key=key)
    removed = s3_notification("ObjectRemoved:Delete", INGEST_BUCKET, key)
    stale = dict(good[0])
    stale["Records"] = [json.loads(json.dumps(good[0]["Records"][0]))]
    stale["Records"][0]["s3"]["object"]["eTag"] = "0" * 32  # a different event, older sequencer
    out = ingest.invoke(
        [sqs_event([json.dumps(removed)]), sqs_event([json.dumps(stale)])], lambda_env(ingest, env)
    )["results"]
    assert out == [{"batchItemFailures": []}, {"batchItemFailures": []}]
    assert chunk_count() == 1
    (files,) = call(vector, env, proxy("GET", f"/v1/vector_stores/{store}/files"))
    assert len(response_json(files)["data"]) == 2


def test_ingest_rejects_broken_events_without_losing_the_batch(
    image_artifacts: dict[str, Artifact], env: dict[str, str], moto_endpoint: str
) -> None:
    vector, ingest = image_artifacts["VectorFunction"], image_artifacts["IngestFunction"]
    store = create_store(vector, env, "broken-events")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    ok = put(s3, f"ingest/default/{store}/ok.txt", b"Capybaras are the largest rodents.")
    bodies = [
        "{not json",
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}),
        json.dumps(put(s3, "ingest/default/vs_unknown/x.txt", b"orphan")),
        json.dumps(put(s3, "elsewhere/x.txt", b"wrong prefix")),
        # The layout before tenants: refused (dead-lettered with a reason), never guessed.
        json.dumps(put(s3, f"ingest/{store}/old-layout.txt", b"no tenant")),
        # Another tenant's prefix naming this store: that tenant has no such store.
        json.dumps(put(s3, f"ingest/intruder/{store}/x.txt", b"cross-tenant")),
        json.dumps(ok),
    ]
    batch = sqs_event(bodies)
    (result,) = ingest.invoke([batch], lambda_env(ingest, env))["results"]
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    assert failed == {r["messageId"] for r in batch["Records"][:6]}
    (found,) = call(
        vector, env, proxy("POST", f"/v1/vector_stores/{store}/search", {"query": "capybaras"})
    )
    assert response_json(found)["data"][0]["filename"] == "ok.txt"


def drain(queue_url: str, moto_endpoint: str) -> list[str]:
    """Every message on the ingest queue (as SQS would deliver them to the function)."""
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return bodies
        for message in got:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def upload_files(files_fn: Artifact, env: dict[str, str], docs: dict[str, bytes]) -> list[str]:
    import httpx

    events = []
    for name, data in docs.items():
        request = httpx.Request(
            "POST",
            "http://x/v1/files",
            files={"file": (name, data)},
            data={"purpose": "assistants"},
        )
        events.append(
            api_gateway_event(
                "POST",
                "/v1/files",
                body=request.read(),
                headers={"Content-Type": request.headers["content-type"]},
            )
        )
    return [response_json(r)["id"] for r in call(files_fn, env, *events)]


def test_api_attaches_are_queued_for_the_ingest_function(
    image_artifacts: dict[str, Artifact],
    artifacts: dict[str, Artifact],
    aws_resources: dict[str, str],
    env: dict[str, str],
    moto_endpoint: str,
) -> None:
    vector, ingest = image_artifacts["VectorFunction"], image_artifacts["IngestFunction"]
    queue = aws_resources["IngestQueue"]
    drain(queue, moto_endpoint)
    store = create_store(vector, env, "queued")
    ids = upload_files(
        artifacts["FilesFunction"],
        env,
        {
            "ants.txt": b"Ants farm aphids.",
            "bees.md": b"Bees dance to point at flowers.",
            "bad.pdf": b"%PDF-1.4 broken",
            "wasps.txt": b"Wasps build paper nests.",
        },
    )
    batch, single = call(
        vector,
        env,
        proxy("POST", f"/v1/vector_stores/{store}/file_batches", {"file_ids": ids[:3]}),
        proxy(
            "POST",
            f"/v1/vector_stores/{store}/files",
            {"file_id": ids[3], "attributes": {"k": "v"}},
        ),
    )
    assert response_json(batch)["status"] == "in_progress"
    assert response_json(batch)["file_counts"]["in_progress"] == 3
    assert response_json(single)["status"] == "in_progress"
    bodies = drain(queue, moto_endpoint)
    assert len(bodies) == 4
    (result,) = ingest.invoke([sqs_event(bodies)], lambda_env(ingest, env))["results"]
    assert result == {"batchItemFailures": []}  # a bad file is a final "failed", not a retry
    batch_id = response_json(batch)["id"]
    done, files, hits = call(
        vector,
        env,
        proxy("GET", f"/v1/vector_stores/{store}/file_batches/{batch_id}"),
        proxy("GET", f"/v1/vector_stores/{store}/files"),
        proxy("POST", f"/v1/vector_stores/{store}/search", {"query": "paper nests"}),
    )
    assert response_json(done)["status"] == "completed"
    assert response_json(done)["file_counts"] == {
        "in_progress": 0,
        "completed": 2,
        "failed": 1,
        "cancelled": 0,
        "total": 3,
    }
    statuses = {f["id"]: f["status"] for f in response_json(files)["data"]}
    assert statuses == {
        ids[0]: "completed",
        ids[1]: "completed",
        ids[2]: "failed",
        ids[3]: "completed",
    }
    assert response_json(hits)["data"][0]["attributes"] == {"k": "v"}
    # Redelivery does nothing more (the files are done).
    again = ingest.invoke([sqs_event(bodies)], lambda_env(ingest, env))["results"][0]
    assert again == {"batchItemFailures": []}

    # A batch cancelled before the function gets to it: its files end cancelled.
    more = upload_files(artifacts["FilesFunction"], env, {"moths.txt": b"Moths seek light."})
    (queued,) = call(
        vector, env, proxy("POST", f"/v1/vector_stores/{store}/file_batches", {"file_ids": more})
    )
    queued_id = response_json(queued)["id"]
    (cancelled,) = call(
        vector, env, proxy("POST", f"/v1/vector_stores/{store}/file_batches/{queued_id}/cancel")
    )
    assert response_json(cancelled)["status"] == "cancelled"
    ingest.invoke([sqs_event(drain(queue, moto_endpoint))], lambda_env(ingest, env))
    (after,) = call(
        vector, env, proxy("GET", f"/v1/vector_stores/{store}/file_batches/{queued_id}")
    )
    assert response_json(after)["status"] == "cancelled"
    assert response_json(after)["file_counts"]["cancelled"] == 1
