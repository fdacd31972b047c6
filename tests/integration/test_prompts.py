"""Prompts (Llama Stack 0.7 shape) on the live local server through llama-stack-client: the
lifecycle with versions and the default, variables checked against the template, bad input,
tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from llama_stack_client import (
    APIStatusError,
    BadRequestError,
    ConflictError,
    LlamaStackClient,
    NotFoundError,
)

from tests.conftest import LiveServer
from tests.integration.agents_server import agents_server, create_key

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prompts")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[LiveServer]:
    with agents_server(home) as live:
        yield live


@pytest.fixture(scope="module")
def alice_key(home: Path, server: LiveServer) -> str:
    return create_key(home, "alice")


@pytest.fixture(scope="module")
def client(server: LiveServer, alice_key: str) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, api_key=alice_key, max_retries=0)


def test_prompt_lifecycle_with_versions_and_default(client: LlamaStackClient) -> None:
    created = client.prompts.create(
        prompt="Hello {{ name }}, you are {{role}}.", variables=["name", "role"]
    )
    pid = created.prompt_id
    assert pid.startswith("pmpt_") and len(pid) == 5 + 48
    assert (created.version, created.is_default) == (1, True)
    assert created.variables == ["name", "role"]

    # A new version that is not the default: retrieve still answers the default one.
    v2 = client.prompts.update(
        pid, prompt="Hi {{name}}.", version=1, variables=["name"], set_as_default=False
    )
    assert (v2.version, v2.is_default, v2.variables) == (2, False, ["name"])
    assert client.prompts.retrieve(pid).version == 1
    assert client.prompts.retrieve(pid, version=2).prompt == "Hi {{name}}."
    # Updating needs the latest version (2), even though the default is 1.
    v3 = client.prompts.update(pid, prompt="Plain.", version=2)
    assert (v3.version, v3.is_default, v3.variables) == (3, True, [])
    assert client.prompts.retrieve(pid).prompt == "Plain."

    versions = client.prompts.versions.list(pid)
    assert [(v.version, v.is_default) for v in versions] == [(1, False), (2, False), (3, True)]
    chosen = client.prompts.set_default_version(pid, version=2)
    assert (chosen.version, chosen.is_default) == (2, True)
    assert client.prompts.retrieve(pid).prompt == "Hi {{name}}."

    other = client.prompts.create(prompt="Other")
    listed = {p.prompt_id: p for p in client.prompts.list()}
    assert listed[pid].version == 2 and listed[pid].is_default
    assert listed[other.prompt_id].prompt == "Other"

    client.prompts.delete(pid)
    with pytest.raises(NotFoundError):
        client.prompts.retrieve(pid)
    with pytest.raises(NotFoundError):
        client.prompts.versions.list(pid)
    with pytest.raises(NotFoundError):
        client.prompts.delete(pid)
    assert pid not in {p.prompt_id for p in client.prompts.list()}


def test_variables_must_match_the_template(client: LlamaStackClient) -> None:
    with pytest.raises(BadRequestError) as caught:
        client.prompts.create(prompt="Dear {{ name }} at {{company}}", variables=["name", "age"])
    message = caught.value.body["error"]["message"]
    assert "company" in message and "age" in message
    assert caught.value.body["error"]["param"] == "variables"
    with pytest.raises(BadRequestError):
        client.prompts.create(prompt="Dear {{ name }}")  # no variables declared
    made = client.prompts.create(prompt="Dear {{ name }}", variables=["name"])
    with pytest.raises(BadRequestError) as caught:
        client.prompts.update(made.prompt_id, prompt="Hi {{who}}", version=1, variables=["name"])
    assert "who" in caught.value.body["error"]["message"]
    assert client.prompts.retrieve(made.prompt_id).version == 1  # no version was made


def test_stale_update_and_unknown_ids(client: LlamaStackClient) -> None:
    made = client.prompts.create(prompt="one")
    client.prompts.update(made.prompt_id, prompt="two", version=1)
    with pytest.raises(ConflictError) as caught:
        client.prompts.update(made.prompt_id, prompt="stale", version=1)
    assert caught.value.body["error"]["param"] == "version"
    assert [v.prompt for v in client.prompts.versions.list(made.prompt_id)] == ["one", "two"]

    with pytest.raises(NotFoundError):
        client.prompts.retrieve(made.prompt_id, version=3)
    with pytest.raises(NotFoundError):
        client.prompts.set_default_version(made.prompt_id, version=9)
    for bad in ("pmpt_" + "0" * 48, "pmpt_short", "x" * 128, "pmpt_" + "G" * 48):
        with pytest.raises(NotFoundError):
            client.prompts.retrieve(bad)
        with pytest.raises(NotFoundError):
            client.prompts.update(bad, prompt="x", version=1)


def test_bounds_are_400s(server: LiveServer, client: LlamaStackClient, alice_key: str) -> None:
    many = [f"v{i}" for i in range(65)]
    for call in (
        lambda: client.prompts.create(prompt="x" * (64 * 1024 + 1)),
        lambda: client.prompts.create(prompt="é" * (32 * 1024 + 1)),  # bytes, not characters
        lambda: client.prompts.create(
            prompt=" ".join(f"{{{{{v}}}}}" for v in many), variables=many
        ),
        lambda: client.prompts.create(prompt="{{1bad}}", variables=["1bad"]),
        lambda: client.prompts.create(prompt="nul \x00 inside"),
        lambda: client.prompts.create(prompt=""),
    ):
        with pytest.raises(BadRequestError):
            call()
    made = client.prompts.create(prompt="v1")
    for version in range(1, 32):
        client.prompts.update(made.prompt_id, prompt=f"v{version + 1}", version=version)
    with pytest.raises(BadRequestError) as caught:
        client.prompts.update(made.prompt_id, prompt="v33", version=32)
    assert caught.value.body["error"]["code"] == "too_many_versions"
    headers = {"authorization": f"Bearer {alice_key}"}
    fresh = client.prompts.create(prompt="fresh")
    for method, path, body in (
        ("POST", "/v1/prompts", b"{"),
        ("POST", "/v1/prompts", b'{"prompt": "x", "surprise": 1}'),
        ("PUT", f"/v1/prompts/{made.prompt_id}", b'{"prompt": "x"}'),
        # Types are not coerced: "1" is not a version, 0 is not a boolean.
        ("PUT", f"/v1/prompts/{fresh.prompt_id}", b'{"prompt": "x", "version": "1"}'),
        (
            "PUT",
            f"/v1/prompts/{fresh.prompt_id}",
            b'{"prompt": "x", "version": 1, "set_as_default": 0}',
        ),
        ("PUT", f"/v1/prompts/{made.prompt_id}/set-default-version", b'{"version": "one"}'),
    ):
        reply = httpx.request(
            method, f"{server.url}{path}", content=body, headers={**headers, **JSON}
        )
        assert reply.status_code == 400, (path, reply.text)
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    assert len(client.prompts.versions.list(fresh.prompt_id)) == 1
    bad_version = httpx.get(
        f"{server.url}/v1/prompts/{made.prompt_id}", params={"version": "0"}, headers=headers
    )
    assert bad_version.status_code == 400


def test_list_pages_through_many_prompts(
    server: LiveServer, home: Path, client: LlamaStackClient
) -> None:
    key = create_key(home, "lister")
    headers = {"authorization": f"Bearer {key}"}
    lister = LlamaStackClient(base_url=server.url, api_key=key, max_retries=0)
    made = {lister.prompts.create(prompt=f"p{i}").prompt_id for i in range(5)}
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = httpx.get(f"{server.url}/v1/prompts", params=params, headers=headers).json()
        assert len(page["data"]) <= 2
        seen += [p["prompt_id"] for p in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert sorted(seen) == sorted(made) and len(seen) == 5
    assert {p.prompt_id for p in lister.prompts.list()} == made


def test_another_tenants_prompt_is_a_404(
    server: LiveServer, home: Path, client: LlamaStackClient
) -> None:
    made = client.prompts.create(prompt="secret {{x}}", variables=["x"])
    bob = LlamaStackClient(base_url=server.url, api_key=create_key(home, "bob"), max_retries=0)
    for call in (
        lambda: bob.prompts.retrieve(made.prompt_id),
        lambda: bob.prompts.update(made.prompt_id, prompt="mine", version=1),
        lambda: bob.prompts.versions.list(made.prompt_id),
        lambda: bob.prompts.set_default_version(made.prompt_id, version=1),
        lambda: bob.prompts.delete(made.prompt_id),
    ):
        with pytest.raises(APIStatusError) as caught:
            call()
        assert caught.value.status_code == 404 and "secret" not in str(caught.value.body)
    assert made.prompt_id not in {p.prompt_id for p in bob.prompts.list()}
    assert client.prompts.retrieve(made.prompt_id).prompt == "secret {{x}}"
