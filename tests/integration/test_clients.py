"""The local server as users reach it: the official openai SDK, llama-stack-client 0.7, raw HTTP."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient
from llama_stack_client import NotFoundError as LSNotFoundError

from tests.conftest import LiveServer, log_text


@pytest.fixture(scope="module")
def oai(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def lsc(live_server: LiveServer) -> LlamaStackClient:
    return LlamaStackClient(base_url=live_server.url, max_retries=0)


def register(live_server: LiveServer, **body: object) -> httpx.Response:
    return httpx.post(f"{live_server.url}/v1/models", json=body, timeout=10)


def test_openai_sdk_lists_and_retrieves_models(oai: openai.OpenAI) -> None:
    models = {m.id: m for m in oai.models.list()}
    assert {"meta-llama/Llama-3.2-3B-Instruct", "amazon.titan-embed-text-v2:0"} <= set(models)
    llama = oai.models.retrieve("meta-llama/Llama-3.2-3B-Instruct")
    assert llama.owned_by == "fake-vllm" and llama.object == "model" and llama.created > 0


def test_openai_sdk_unknown_model_is_404(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        oai.models.retrieve("no-such-model")
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"
    assert err.value.response.headers["x-request-id"]


def test_llama_stack_client_models(lsc: LlamaStackClient) -> None:
    listed = {m.identifier: m for m in lsc.models.list()}
    embed = listed["amazon.titan-embed-text-v2:0"]
    assert embed.model_type == "embedding" and embed.provider_id == "fake-bedrock"
    assert embed.metadata == {"embedding_dimension": 1024}
    got = lsc.models.retrieve("meta-llama/Llama-3.2-3B-Instruct")
    assert got.identifier == "meta-llama/Llama-3.2-3B-Instruct"
    assert got.provider_id == "fake-vllm"
    assert got.provider_resource_id == "meta-llama/Llama-3.2-3B-Instruct"
    assert got.api_model_type == "llm"
    with pytest.raises(LSNotFoundError):
        lsc.models.retrieve("nope")


def test_llama_stack_client_inspect_providers_routes(lsc: LlamaStackClient) -> None:
    assert lsc.inspect.health().status == "OK"
    assert lsc.inspect.version().version
    providers = {p.provider_id: p for p in lsc.providers.list()}
    # This server's run config (tests/conftest.py) uses the old short names: they load, and
    # every answer shows Llama Stack's names.
    assert set(providers) == {
        "fake-vllm",
        "fake-bedrock",
        "lancedb",
        "localfs",
        "builtin",
        "reference",
        "datasetio-localfs",
        "basic",
        "llm-as-judge",
        "eval-builtin",
    }
    assert providers["builtin"].api == "agents"
    assert (providers["datasetio-localfs"].api, providers["basic"].api) == ("datasetio", "scoring")
    assert (providers["reference"].api, providers["reference"].provider_type) == (
        "batches",
        "inline::reference",
    )
    assert providers["builtin"].provider_type == "inline::builtin"
    vllm = lsc.providers.retrieve("fake-vllm")
    assert vllm.api == "inference" and vllm.provider_type == "remote::vllm"
    assert providers["lancedb"].provider_type == "inline::lancedb"
    assert (
        providers["localfs"].api == "files"
        and providers["localfs"].provider_type == "inline::localfs"
    )
    assert vllm.config["url"] == "http://127.0.0.1:9/v1"
    assert "sk-secret-never-shown" not in str(vllm.config)
    routes = {(r.route, r.method) for r in lsc.routes.list()}
    assert ("/v1/models", "GET") in routes and ("/v1/providers/{provider_id}", "GET") in routes
    model_route = next(r for r in lsc.routes.list() if r.route == "/v1/models")
    assert model_route.provider_types == ["remote::bedrock", "remote::vllm"]
    files_route = next(r for r in lsc.routes.list() if r.route == "/v1/files")
    assert files_route.provider_types == ["inline::localfs"]
    alpha = lsc.routes.list(api_filter="v1alpha")
    assert {r.route for r in alpha} == {
        "/v1alpha/eval/benchmarks",
        "/v1alpha/eval/benchmarks/{benchmark_id}",
        "/v1alpha/eval/benchmarks/{benchmark_id}/evaluations",
        "/v1alpha/eval/benchmarks/{benchmark_id}/jobs",
        "/v1alpha/eval/benchmarks/{benchmark_id}/jobs/{job_id}",
        "/v1alpha/eval/benchmarks/{benchmark_id}/jobs/{job_id}/result",
    }
    assert all(r.provider_types == ["inline::builtin"] for r in alpha)
    with pytest.raises(LSNotFoundError):
        lsc.providers.retrieve("nope")


def test_register_retrieve_unregister(
    live_server: LiveServer, oai: openai.OpenAI, lsc: LlamaStackClient
) -> None:
    model_id = f"team/{uuid.uuid4().hex[:6]}:latest"
    created = register(
        live_server,
        model_id=model_id,
        provider_id="fake-vllm",
        provider_model_id="meta-llama/Llama-3.1-8B-Instruct",
        metadata={"context_window": 131072},
    )
    assert created.status_code == 200, created.text
    assert oai.models.retrieve(model_id).owned_by == "fake-vllm"
    got = lsc.models.retrieve(model_id)
    assert got.provider_resource_id == "meta-llama/Llama-3.1-8B-Instruct"
    assert got.metadata == {"context_window": 131072}
    assert model_id in {m.id for m in oai.models.list()}
    # The same registration through llama-stack-client's generic post.
    other = lsc.post(
        "/v1/models",
        body={
            "model_id": f"{model_id}-2",
            "provider_id": "fake-bedrock",
            "model_type": "embedding",
            "metadata": {"embedding_dimension": 256},
        },
        cast_to=httpx.Response,
    )
    assert other.status_code == 200
    assert lsc.models.retrieve(f"{model_id}-2").api_model_type == "embedding"
    # Conflicts.
    again = register(live_server, model_id=model_id, provider_id="fake-vllm")
    assert again.status_code == 409 and again.json()["error"]["code"] == "model_exists"
    static = register(
        live_server, model_id="meta-llama/Llama-3.2-3B-Instruct", provider_id="fake-vllm"
    )
    assert static.status_code == 409
    # Unregister.
    deleted = httpx.delete(f"{live_server.url}/v1/models/{model_id}")
    assert deleted.status_code == 200 and deleted.json() == {
        "id": model_id,
        "object": "model",
        "deleted": True,
    }
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve(model_id)
    assert httpx.delete(f"{live_server.url}/v1/models/{model_id}").status_code == 404
    config_model = httpx.delete(f"{live_server.url}/v1/models/meta-llama/Llama-3.2-3B-Instruct")
    assert config_model.status_code == 409


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"model_id": "x", "provider_id": "nowhere"}, "provider_id", "not a configured"),
        ({"model_id": "x"}, "provider_id", "several"),
        ({"model_id": 5, "provider_id": "fake-vllm"}, "model_id", "string"),
        ({"model_id": "../../etc/passwd", "provider_id": "fake-vllm"}, "model_id", "pattern"),
        ({"model_id": "x", "provider_id": "fake-vllm", "model_type": "llama"}, "model_type", "llm"),
        (
            {"model_id": "x", "provider_id": "fake-vllm", "model_type": "embedding"},
            "metadata.embedding_dimension",
            "embedding_dimension",
        ),
        (
            {
                "model_id": "x",
                "provider_id": "fake-vllm",
                "model_type": "embedding",
                "metadata": {"embedding_dimension": 8, "supported_dimensions": ["4"]},
            },
            "metadata.supported_dimensions",
            "'any' or a list",
        ),
        ({"model_id": "x", "provider_id": "fake-vllm", "surprise": 1}, "surprise", "Extra"),
        ({"provider_id": "fake-vllm"}, "model_id", "required"),
    ],
)
def test_bad_registrations_are_400_naming_the_field(
    live_server: LiveServer, body: dict[str, object], param: str, fragment: str
) -> None:
    reply = httpx.post(f"{live_server.url}/v1/models", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b"[1, 2]", {"content-type": "application/json"}),
        (b"\xff\xfe", {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
    ],
)
def test_malformed_bodies_are_400(
    live_server: LiveServer, content: bytes, headers: dict[str, str]
) -> None:
    reply = httpx.post(f"{live_server.url}/v1/models", content=content, headers=headers)
    assert reply.status_code == 400, reply.text
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}


def test_oversize_body_is_413_and_nothing_is_stored(live_server: LiveServer) -> None:
    body = {"model_id": "huge", "provider_id": "fake-vllm", "metadata": {"x": "y" * 70_000}}
    reply = httpx.post(f"{live_server.url}/v1/models", json=body)
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "request_too_large"

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"model_id": "huge2", "provider_id": "fake-vllm", "metadata": {"x": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}}'

    chunked = httpx.post(
        f"{live_server.url}/v1/models",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert chunked.status_code == 413
    assert httpx.get(f"{live_server.url}/v1/models/huge").status_code == 404
    assert httpx.get(f"{live_server.url}/v1/models/huge2").status_code == 404


def test_unknown_route_and_method(live_server: LiveServer) -> None:
    missing = httpx.get(f"{live_server.url}/v1/chat/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.put(f"{live_server.url}/v1/health")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_request_id_is_echoed_or_generated(live_server: LiveServer) -> None:
    mine = httpx.get(f"{live_server.url}/v1/health", headers={"x-request-id": "trace-42"})
    assert mine.headers["x-request-id"] == "trace-42"
    theirs = httpx.get(f"{live_server.url}/v1/models/none")
    assert theirs.headers["x-request-id"].startswith("req_")
    assert theirs.headers["x-request-id"] in log_text(live_server, theirs.headers["x-request-id"])


def test_openapi_is_served_with_the_error_shape(live_server: LiveServer) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    assert "/v1/models/{model_id}" in spec["paths"]
    post = spec["paths"]["/v1/models"]["post"]["responses"]
    assert "422" not in post and post["400"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("ErrorResponse")


def test_store_dimension_the_model_cannot_produce_is_400_at_creation(oai: openai.OpenAI) -> None:
    """This config's Titan declares no metadata.supported_dimensions: only its own 1024."""
    with pytest.raises(openai.BadRequestError) as err:
        oai.vector_stores.create(
            name="small",
            extra_body={
                "embedding_model": "amazon.titan-embed-text-v2:0",
                "embedding_dimension": 256,
            },
        )
    assert err.value.body["param"] == "embedding_dimension"  # type: ignore[index]
    assert err.value.code == "unsupported_dimensions"


def test_old_short_provider_names_still_load_and_serve(
    live_server: LiveServer, oai: openai.OpenAI, lsc: LlamaStackClient
) -> None:
    """tests/conftest.py's run config writes `bedrock`, `vllm` and `lancedb` (the names before
    Llama Stack's): it loads, serves through those providers and shows Llama Stack's names."""
    config = (live_server.home / "run.yaml").read_text()
    assert "provider_type: bedrock\n" in config and "provider_type: lancedb\n" in config
    vectors = oai.embeddings.create(model="amazon.titan-embed-text-v2:0", input="llamas")
    assert len(vectors.data[0].embedding) == 1024
    store = oai.vector_stores.create(
        name="aliases", extra_body={"embedding_model": "amazon.titan-embed-text-v2:0"}
    )
    assert store.status == "completed"
    shown = {p.provider_id: p.provider_type for p in lsc.providers.list()}
    assert shown["fake-bedrock"] == "remote::bedrock" and shown["lancedb"] == "inline::lancedb"


def test_docs_render_offline(live_server: LiveServer) -> None:
    """/docs needs no CDN: the page loads Swagger UI from this server (fastapi-offline's
    files), and those files are served."""
    page = httpx.get(f"{live_server.url}/docs", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "cdn." not in page.text and "/docs/assets/swagger-ui-bundle.js" in page.text
    script = httpx.get(f"{live_server.url}/docs/assets/swagger-ui-bundle.js", timeout=10)
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text[:2000]
    assert httpx.get(f"{live_server.url}/docs/assets/swagger-ui.css", timeout=10).status_code == 200
    assert (
        httpx.get(f"{live_server.url}/openapi.json", timeout=10).json()["openapi"].startswith("3.")
    )
