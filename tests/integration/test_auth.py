"""Auth and tenants on the live local server: keys made by `llamda keys`, sent by unmodified
SDKs as `api_key`; tenant isolation (404, never 403); per-key rate limits shared by processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from llama_stack_client import AuthenticationError as LSAuthError
from llama_stack_client import LlamaStackClient

from tests.conftest import LiveServer, start_server, stop_server
from tests.fakes.bedrock import FakeBedrockServer

CONFIG = """
version: 1
profile: local
apis: [inspect, models, inference, safety, files, vector_io]
providers:
  inference:
    - provider_id: bedrock
      provider_type: bedrock
      config: {region_name: us-east-1, endpoint_url: "${env.FAKE_BEDROCK_URL:=http://127.0.0.1:9}"}
  safety:
    - {provider_id: rules, provider_type: rules}
  vector_io:
    - {provider_id: lancedb, provider_type: lancedb}
shields:
  - {shield_id: pii, provider_id: rules}
models:
  - {model_id: llama, provider_id: bedrock, provider_model_id: LLAMA}
  - {model_id: guarded, provider_id: bedrock, provider_model_id: GUARDED, input_shields: [pii]}
  - {model_id: titan, provider_id: bedrock, provider_model_id: "amazon.titan-embed-text-v2:0", model_type: embedding, metadata: {embedding_dimension: 1024}}
storage:
  records: {type: sqlite, path: "${env.LLAMDA_HOME}/records.sqlite3"}
  objects: {type: local, root: "${env.LLAMDA_HOME}/objects"}
  vectors: {uri: "${env.LLAMDA_HOME}/lancedb"}
server:
  auth: true
routing: {max_retries: 0, timeout_seconds: 5}
"""


def keys_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llamda.cli", "keys", *args, "--config", str(home / "run.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LLAMDA_HOME": str(home)},
        check=False,
    )


def create_key(home: Path, *args: str) -> str:
    done = keys_cli(home, "create", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("auth")
    (home / "run.yaml").write_text(CONFIG)
    return home


@pytest.fixture(scope="module")
def server(home: Path, fake_bedrock: FakeBedrockServer) -> Iterator[LiveServer]:
    live = start_server(home / "run.yaml", home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def alice(home: Path) -> str:
    return create_key(home, "--tenant", "alice")


@pytest.fixture(scope="module")
def bob(home: Path) -> str:
    return create_key(home, "--tenant", "bob")


def h(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_keys_cli_prints_key_last_and_never_lists_it(home: Path) -> None:
    key = create_key(home, "--tenant", "listing", "--rpm", "7")
    assert key.startswith("llamda-") and len(key) >= 40
    listed = keys_cli(home, "list", "--tenant", "listing")
    assert listed.returncode == 0, listed.stderr
    assert "listing" in listed.stdout and " 7 " in listed.stdout
    assert key not in listed.stdout and key[10:30] not in listed.stdout
    records = (home / "records.sqlite3").read_bytes()
    assert key.encode() not in records  # only the hash is stored
    bad = keys_cli(home, "create", "--tenant", "../etc")
    assert bad.returncode == 2 and "tenant" in bad.stderr


def test_sdks_send_the_key_unchanged(server: LiveServer, alice: str) -> None:
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=alice, max_retries=0)
    reply = oai.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "say something"}]
    )
    assert reply.choices[0].message.content
    assert "llama" in {m.id for m in oai.models.list()}
    lsc = LlamaStackClient(base_url=server.url, api_key=alice, max_retries=0)
    assert "llama" in {m.identifier for m in lsc.models.list()}


def test_missing_bad_and_revoked_keys_are_401_and_health_is_open(
    server: LiveServer, home: Path
) -> None:
    assert httpx.get(f"{server.url}/v1/health").status_code == 200
    assert httpx.get(f"{server.url}/v1/version").status_code == 200
    missing = httpx.get(f"{server.url}/v1/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert missing.headers["x-request-id"]
    forged = "llamda-" + "A" * 43
    bad = httpx.get(f"{server.url}/v1/models", headers=h(forged))
    assert bad.status_code == 401 and forged not in bad.text
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-nope", max_retries=0).models.list()
    with pytest.raises(LSAuthError):
        LlamaStackClient(base_url=server.url, max_retries=0).models.list()
    # An upload without a key is refused before its body is read.
    upload = httpx.post(f"{server.url}/v1/files", files={"file": ("a.txt", b"x")})
    assert upload.status_code == 401

    key = create_key(home, "--tenant", "short-lived")
    assert httpx.get(f"{server.url}/v1/models", headers=h(key)).status_code == 200
    key_id = keys_cli(home, "list", "--tenant", "short-lived").stdout.splitlines()[-1].split()[0]
    done = keys_cli(home, "revoke", key_id)
    assert done.returncode == 0, done.stderr
    # A running server trusts a key for at most 30 s; a process starting now refuses it.
    fresh = start_server(home / "run.yaml", home, {"FAKE_BEDROCK_URL": "http://127.0.0.1:9"})
    try:
        assert httpx.get(f"{fresh.url}/v1/models", headers=h(key)).status_code == 401
    finally:
        stop_server(fresh)


def test_tenants_never_see_each_other(server: LiveServer, alice: str, bob: str) -> None:
    base = server.url
    created = httpx.post(
        f"{base}/v1/files",
        headers=h(alice),
        files={"file": ("secret.txt", b"alice's plans")},
        data={"purpose": "assistants"},
    )
    assert created.status_code == 200, created.text
    file_id = created.json()["id"]
    store = httpx.post(
        f"{base}/v1/vector_stores",
        headers=h(alice),
        json={"name": "alice-kb", "file_ids": [file_id]},
        timeout=60,
    )
    assert store.status_code == 200, store.text
    store_id = store.json()["id"]
    model = httpx.post(
        f"{base}/v1/models",
        headers=h(alice),
        json={"model_id": f"alice-{uuid.uuid4().hex[:6]}", "provider_id": "bedrock"},
    )
    assert model.status_code == 200, model.text
    model_id = model.json()["id"]

    # Alice sees her things.
    assert httpx.get(f"{base}/v1/files/{file_id}", headers=h(alice)).status_code == 200
    assert httpx.get(f"{base}/v1/models/{model_id}", headers=h(alice)).status_code == 200

    # Bob gets 404 for each, and his listings never show Alice's ids.
    for method, path, body in [
        ("GET", f"/v1/files/{file_id}", None),
        ("GET", f"/v1/files/{file_id}/content", None),
        ("DELETE", f"/v1/files/{file_id}", None),
        ("GET", f"/v1/vector_stores/{store_id}", None),
        ("POST", f"/v1/vector_stores/{store_id}", {"name": "mine now"}),
        ("POST", f"/v1/vector_stores/{store_id}/search", {"query": "plans"}),
        ("GET", f"/v1/vector_stores/{store_id}/files", None),
        ("POST", f"/v1/vector_stores/{store_id}/files", {"file_id": file_id}),
        ("DELETE", f"/v1/vector_stores/{store_id}", None),
        ("GET", f"/v1/models/{model_id}", None),
        ("DELETE", f"/v1/models/{model_id}", None),
    ]:
        reply = httpx.request(method, f"{base}{path}", headers=h(bob), json=body, timeout=30)
        assert reply.status_code == 404, (method, path, reply.status_code, reply.text)
    bob_files = httpx.get(f"{base}/v1/files", headers=h(bob)).json()["data"]
    bob_stores = httpx.get(f"{base}/v1/vector_stores", headers=h(bob)).json()["data"]
    bob_models = httpx.get(f"{base}/v1/models", headers=h(bob)).json()["data"]
    assert file_id not in {f["id"] for f in bob_files}
    assert store_id not in {s["id"] for s in bob_stores}
    assert model_id not in {m["id"] for m in bob_models}
    # Bob's attach of Alice's file into his own store: the file is not his either.
    own = httpx.post(f"{base}/v1/vector_stores", headers=h(bob), json={"name": "bob-kb"})
    attach = httpx.post(
        f"{base}/v1/vector_stores/{own.json()['id']}/files",
        headers=h(bob),
        json={"file_id": file_id},
    )
    assert attach.status_code in (400, 404), attach.text
    # And Alice's things survived Bob's attempts.
    assert httpx.get(f"{base}/v1/files/{file_id}", headers=h(alice)).status_code == 200
    assert httpx.get(f"{base}/v1/vector_stores/{store_id}", headers=h(alice)).json()["name"] == (
        "alice-kb"
    )


def test_admin_routes_need_the_admin_role(server: LiveServer, home: Path, alice: str) -> None:
    admin = create_key(home, "--tenant", "ops", "--role", "admin")
    denied = httpx.get(f"{server.url}/v1/admin/keys", headers=h(alice))
    assert denied.status_code == 403
    made = httpx.post(
        f"{server.url}/v1/admin/keys", headers=h(admin), json={"tenant": "carol", "rpm": 5}
    )
    assert made.status_code == 200, made.text
    secret, key_id = made.json()["key"], made.json()["id"]
    assert httpx.get(f"{server.url}/v1/models", headers=h(secret)).status_code == 200
    listed = httpx.get(f"{server.url}/v1/admin/keys?tenant=carol", headers=h(admin)).json()
    assert [k["id"] for k in listed["data"]] == [key_id]
    assert secret not in json.dumps(listed) and "hash" not in json.dumps(listed)
    revoked = httpx.delete(f"{server.url}/v1/admin/keys/{key_id}", headers=h(admin))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    # Revoked through this process: it stops working here at once.
    assert httpx.get(f"{server.url}/v1/models", headers=h(secret)).status_code == 401


def test_rate_limit_is_shared_across_processes(
    server: LiveServer, home: Path, fake_bedrock: FakeBedrockServer
) -> None:
    key = create_key(home, "--tenant", "limited", "--rpm", "4")
    second = start_server(home / "run.yaml", home, {"FAKE_BEDROCK_URL": fake_bedrock.endpoint})
    try:
        if time.time() % 60 > 50:  # keep the six calls inside one one-minute window
            time.sleep(61 - time.time() % 60)
        statuses = []
        for i in range(6):
            url = (server if i % 2 == 0 else second).url
            reply = httpx.get(f"{url}/v1/models", headers=h(key))
            statuses.append(reply.status_code)
            if reply.status_code == 429:
                assert 1 <= int(reply.headers["retry-after"]) <= 60
                assert reply.json()["error"]["type"] == "rate_limit_error"
        assert statuses == [200, 200, 200, 200, 429, 429]
    finally:
        stop_server(second)


def test_logs_carry_tenant_and_request_id_never_key_or_prompt(
    server: LiveServer, alice: str
) -> None:
    marker = f"prompt-{uuid.uuid4().hex}"
    reply = httpx.post(
        f"{server.url}/v1/chat/completions",
        headers={**h(alice), "x-request-id": f"trace-{marker[-8:]}"},
        json={"model": "llama", "messages": [{"role": "user", "content": marker}]},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    # The request's last line ("request", with its status) is written after the response.
    deadline = time.monotonic() + 10
    while True:
        log = server.log.read_text()
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        done = any(
            e.get("message") == "request" and e.get("request_id") == f"trace-{marker[-8:]}"
            for e in lines
        )
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    mine = [entry for entry in lines if entry.get("request_id") == f"trace-{marker[-8:]}"]
    assert mine and all(entry.get("tenant") == "alice" for entry in mine)
    assert alice not in log and marker not in log


def test_tokens_per_minute_come_from_provider_usage(server: LiveServer, home: Path) -> None:
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    key = create_key(home, "--tenant", "tpm", "--tpm", "5")
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    first = oai.chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "one two three four five six"}]
    )
    assert first.usage is not None and first.usage.total_tokens > 5
    with pytest.raises(openai.RateLimitError) as err:
        oai.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}])
    assert "tokens per minute" in err.value.message
    # Another key of the same tenant has its own budget.
    other = create_key(home, "--tenant", "tpm", "--tpm", "5")
    assert httpx.get(f"{server.url}/v1/models", headers=h(other)).status_code == 200


def test_local_metrics_in_prometheus_format(server: LiveServer, home: Path, alice: str) -> None:
    admin = create_key(home, "--tenant", "ops", "--role", "admin")
    assert httpx.get(f"{server.url}/metrics").status_code == 401  # behind auth like the rest
    # They span every tenant (names, models, counts): not for members.
    assert httpx.get(f"{server.url}/metrics", headers=h(alice)).status_code == 403
    before = httpx.get(f"{server.url}/metrics", headers=h(admin)).text
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=alice, max_retries=0)
    oai.chat.completions.create(model="llama", messages=[{"role": "user", "content": "a b c"}])
    reply = httpx.get(f"{server.url}/metrics", headers=h(admin))
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")

    def value(text: str, series: str) -> float:
        found = [line for line in text.splitlines() if line.startswith(series + " ")]
        return float(found[0].split()[-1]) if found else 0.0

    series = 'llamda_requests_total{model="llama",provider="bedrock"}'
    assert value(reply.text, series) == value(before, series) + 1
    assert value(reply.text, 'llamda_tokens_in_total{model="llama",provider="bedrock"}') > 0
    assert "# TYPE llamda_http_request_milliseconds histogram" in reply.text
    assert alice not in reply.text


def test_shared_models_need_the_admin_role(
    server: LiveServer, home: Path, alice: str, bob: str
) -> None:
    admin = create_key(home, "--tenant", "ops", "--role", "admin")
    name = f"shared-{uuid.uuid4().hex[:6]}"
    body = {"model_id": name, "provider_id": "bedrock", "provider_model_id": "LLAMA"}
    member = httpx.post(f"{server.url}/v1/models", headers=h(alice), json={**body, "shared": True})
    assert member.status_code == 403 and member.json()["error"]["code"] == "admin_required"
    made = httpx.post(f"{server.url}/v1/models", headers=h(admin), json={**body, "shared": True})
    assert made.status_code == 200, made.text
    # Every tenant sees and uses it; nobody can take its id for themselves.
    for key in (alice, bob):
        assert name in {
            m["id"] for m in httpx.get(f"{server.url}/v1/models", headers=h(key)).json()["data"]
        }
        chat = httpx.post(
            f"{server.url}/v1/chat/completions",
            headers=h(key),
            json={"model": name, "messages": [{"role": "user", "content": "hello"}]},
            timeout=30,
        )
        assert chat.status_code == 200, chat.text
    clash = httpx.post(f"{server.url}/v1/models", headers=h(bob), json=body)
    assert clash.status_code == 409
    assert httpx.delete(f"{server.url}/v1/models/{name}", headers=h(bob)).status_code == 403
    assert httpx.delete(f"{server.url}/v1/models/{name}", headers=h(admin)).status_code == 200
    assert httpx.get(f"{server.url}/v1/models/{name}", headers=h(alice)).status_code == 404


def test_keys_cli_writes_to_a_deployed_stacks_table(moto_endpoint: str, tmp_path: Path) -> None:
    """`llamda keys create --stack NAME`: the table is found through CloudFormation (moto
    here, with the stack's own RecordsTable definition), the key lands in it, hashed."""
    import boto3
    import yaml

    class _Template(yaml.SafeLoader):
        """CloudFormation's short tags (!Ref, !Sub...) read as their plain values."""

    _Template.add_multi_constructor(
        "!",
        lambda loader, _tag, node: (
            loader.construct_scalar(node)
            if isinstance(node, yaml.ScalarNode)
            else loader.construct_sequence(node)
        ),
    )
    root = Path(__file__).resolve().parents[2]
    template = yaml.load((root / "template.yaml").read_text(), Loader=_Template)
    table = template["Resources"]["RecordsTable"]
    table["Properties"].pop("TimeToLiveSpecification", None)  # moto: not at creation
    stack = f"llamda-{uuid.uuid4().hex[:6]}"
    cfn = boto3.client("cloudformation", endpoint_url=moto_endpoint, region_name="us-east-1")
    cfn.create_stack(
        StackName=stack,
        TemplateBody=json.dumps({"Resources": {"RecordsTable": table}}),
    )
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_endpoint, "LLAMDA_HOME": str(tmp_path)}
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamda.cli",
            "keys",
            "create",
            "--stack",
            stack,
            "--region",
            "us-east-1",
            "--tenant",
            "admin",
            "--role",
            "admin",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamda.cli",
            "keys",
            "list",
            "--stack",
            stack,
            "--region",
            "us-east-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert listed.returncode == 0 and "admin" in listed.stdout and key not in listed.stdout
    name = cfn.describe_stack_resource(StackName=stack, LogicalResourceId="RecordsTable")[
        "StackResourceDetail"
    ]["PhysicalResourceId"]
    items = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1").scan(
        TableName=name
    )["Items"]
    assert {i["pk"]["S"] for i in items} == {"_system#api_keys", "_system#api_key_hashes"}
    assert key not in json.dumps(items)


CARD = "4111 1111 1111 1111"


def test_a_private_alias_or_fallback_keeps_the_upstream_models_shields(
    server: LiveServer, bob: str
) -> None:
    """A member cannot walk around a shielded model by registering another name for the same
    upstream model, or one that falls back to it."""

    def chat(model: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v1/chat/completions",
            headers=h(bob),
            json={"model": model, "messages": [{"role": "user", "content": f"card {CARD}"}]},
            timeout=30,
        )

    assert chat("guarded").status_code == 400
    alias = f"alias-{uuid.uuid4().hex[:6]}"
    made = httpx.post(
        f"{server.url}/v1/models",
        headers=h(bob),
        json={"model_id": alias, "provider_id": "bedrock", "provider_model_id": "GUARDED"},
    )
    assert made.status_code == 200, made.text
    blocked = chat(alias)
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "guardrail_intervened"
    chained = f"chain-{uuid.uuid4().hex[:6]}"
    made = httpx.post(
        f"{server.url}/v1/models",
        headers=h(bob),
        json={
            "model_id": chained,
            "provider_id": "bedrock",
            "provider_model_id": "SOMETHING-ELSE",
            "fallbacks": ["guarded"],
        },
    )
    assert made.status_code == 200, made.text
    assert chat(chained).status_code == 400
    assert chat("llama").status_code == 200  # an unshielded model stays unshielded


def test_a_tenants_shield_never_shadows_a_shared_one(
    server: LiveServer, home: Path, bob: str, alice: str
) -> None:
    admin = create_key(home, "--tenant", "ops", "--role", "admin")
    name = f"corp-{uuid.uuid4().hex[:6]}"
    squat = httpx.post(
        f"{server.url}/v1/shields",
        headers=h(bob),
        json={"shield_id": name, "provider_id": "rules", "params": {"pii": [], "keywords": []}},
    )
    assert squat.status_code == 200, squat.text
    shared = httpx.post(
        f"{server.url}/v1/shields",
        headers=h(admin),
        json={
            "shield_id": name,
            "provider_id": "rules",
            "params": {"pii": ["credit_card"]},
            "shared": True,
        },
    )
    assert shared.status_code == 200, shared.text
    model = f"corp-llm-{uuid.uuid4().hex[:6]}"
    made = httpx.post(
        f"{server.url}/v1/models",
        headers=h(admin),
        json={
            "model_id": model,
            "provider_id": "bedrock",
            "provider_model_id": "CORP",
            "input_shields": [name],
            "shared": True,
        },
    )
    assert made.status_code == 200, made.text
    for key in (alice, bob):
        reply = httpx.post(
            f"{server.url}/v1/chat/completions",
            headers=h(key),
            json={"model": model, "messages": [{"role": "user", "content": f"card {CARD}"}]},
            timeout=30,
        )
        assert reply.status_code == 400, (key == bob, reply.text)
    # What bob reads and deletes under that id is the shared shield (deleting needs admin).
    got = httpx.get(f"{server.url}/v1/shields/{name}", headers=h(bob)).json()
    assert got["params"]["pii"] == ["credit_card"]
    assert httpx.delete(f"{server.url}/v1/shields/{name}", headers=h(bob)).status_code == 403


def test_streamed_tokens_count_against_the_key(server: LiveServer, home: Path) -> None:
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    key = create_key(home, "--tenant", "streamer", "--tpm", "5")
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in oai.chat.completions.create(
            model="llama",
            messages=[{"role": "user", "content": "one two three four five six"}],
            stream=True,
        )
        if c.choices
    )
    assert text  # the client did not ask for usage; the key is charged all the same
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])


def test_participant_names_are_names(server: LiveServer, alice: str) -> None:
    reply = httpx.post(
        f"{server.url}/v1/chat/completions",
        headers=h(alice),
        json={"model": "guarded", "messages": [{"role": "user", "content": "hi", "name": CARD}]},
    )
    assert reply.status_code == 400 and "name" in reply.json()["error"]["param"]


def test_a_shared_embedding_model_in_use_by_any_tenant_stays(
    server: LiveServer, home: Path, bob: str
) -> None:
    admin = create_key(home, "--tenant", "ops", "--role", "admin")
    name = f"emb-{uuid.uuid4().hex[:6]}"
    made = httpx.post(
        f"{server.url}/v1/models",
        headers=h(admin),
        json={
            "model_id": name,
            "provider_id": "bedrock",
            "provider_model_id": "amazon.titan-embed-text-v2:0",
            "model_type": "embedding",
            "metadata": {"embedding_dimension": 1024},
            "shared": True,
        },
    )
    assert made.status_code == 200, made.text
    store = httpx.post(
        f"{server.url}/v1/vector_stores",
        headers=h(bob),
        json={"name": "bob-kb", "embedding_model": name},
        timeout=30,
    )
    assert store.status_code == 200, store.text
    refused = httpx.delete(f"{server.url}/v1/models/{name}", headers=h(admin))
    assert refused.status_code == 409 and "bob-kb" not in refused.text
    assert store.json()["id"] not in refused.text  # another tenant's store is not named
    gone = httpx.delete(f"{server.url}/v1/vector_stores/{store.json()['id']}", headers=h(bob))
    assert gone.status_code == 200
    assert httpx.delete(f"{server.url}/v1/models/{name}", headers=h(admin)).status_code == 200


def test_members_see_storage_providers_without_where_data_lives(
    server: LiveServer, home: Path, alice: str
) -> None:
    """Every tenant's Files live in the files provider's bucket or directory: only admins see
    where; members see the provider, its type and health."""
    admin = create_key(home, "--tenant", "ops", "--role", "admin")
    member = httpx.get(f"{server.url}/v1/providers/localfs", headers=h(alice)).json()
    assert member["provider_type"] == "inline::localfs" and member["health"]["status"] == "OK"
    assert member["config"] == {}
    assert str(home) not in httpx.get(f"{server.url}/v1/providers", headers=h(alice)).text
    full = httpx.get(f"{server.url}/v1/providers/localfs", headers=h(admin)).json()
    assert full["config"]["root"].startswith(str(home))
