"""schemathesis against /openapi.json of the live server, through its CLI: no 5xx anywhere,
responses match the documented schemas and status codes, bad input is refused; plus a stateful
check that whatever a create call answers, the listing still works and agrees with it.

Seeds: ``LLAMDA_FUZZ_SEED`` when set; in CI (``CI`` set) one derived from the commit hash, so
a red run reproduces on the same commit; otherwise a new one per run. The seed is printed and
is in every failure message: rerun with ``LLAMDA_FUZZ_SEED=<seed>``.

Tiers: the default run (a few examples per operation, about two minutes here) and the deep run
(``slow``: many more examples per operation; CI runs it).

``positive_data_acceptance`` is excluded: some rules are not expressible in the schema
(provider_id may be omitted only when the stack has one inference provider; embedding models
need metadata.embedding_dimension), so a schema-valid body can rightly get a 400.
``ensure_resource_availability`` is excluded: schemathesis links POST /v1/vector_stores/{id}
(an update) to POST /v1/vector_stores/{id}/files and reads the random file_id it then sends
as a "created resource"; a 404 for a file that never existed is the right answer.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, LiveServer

UPLOAD = "upload_file_v1_files_post"
DEFAULT_EXAMPLES, DEEP_EXAMPLES = 6, 150
STATEFUL_EXAMPLES, DEEP_STATEFUL_EXAMPLES = 12, 200


def fuzz_seed() -> int:
    """The run's seed (see the module docstring)."""
    if os.environ.get("LLAMDA_FUZZ_SEED"):
        return int(os.environ["LLAMDA_FUZZ_SEED"])
    if os.environ.get("CI"):
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return int(head.stdout.strip()[:8], 16)
    return random.SystemRandom().randrange(2**32)


@pytest.fixture(scope="module")
def fuzz_seed_value() -> int:
    value = fuzz_seed()
    print(f"\nfuzz seed: {value} (rerun with LLAMDA_FUZZ_SEED={value})")
    return value


def _fuzz(live_server: LiveServer, work: Path, run_seed: int, examples: int, *args: str) -> str:
    """``st run`` in ``work`` (its caches and reports stay out of the repo)."""
    work.mkdir(parents=True, exist_ok=True)
    st_cli = Path(sys.executable).parent / "st"
    proc = subprocess.run(
        [
            str(st_cli),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{live_server.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(examples),
            "--seed",
            str(run_seed),
            # Reproducible from the seed alone: no example database carried between runs.
            "--generation-database",
            "none",
            # `--checks all` limits answers to 10 s; the first store creation on a cold, shared
            # test machine (LanceDB import, table and full-text index) can take longer.
            "--max-response-time",
            "30",
            "--request-timeout",
            "60",
            "--report-dir",
            str(work / "report"),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=3000,
    )
    failures = proc.stdout[proc.stdout.find("FAILURES") :]
    assert proc.returncode == 0, (
        f"fuzz seed {run_seed} (rerun with LLAMDA_FUZZ_SEED={run_seed})\n"
        + failures[:8000]
        + proc.stderr[-2000:]
    )
    return proc.stdout


def _fuzz_everything(live_server: LiveServer, tmp_path: Path, run_seed: int, examples: int) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    operations = sum(len(item) for item in spec["paths"].values())
    everything_else = _fuzz(
        live_server,
        tmp_path / "a",
        run_seed,
        examples,
        "--exclude-checks",
        "positive_data_acceptance,ensure_resource_availability",
        "--exclude-operation-id",
        UPLOAD,
    )
    assert f"Tested: {operations - 1}" in everything_else  # every other operation of the spec
    # multipart/form-data carries every field as bytes: a "number" in the file part is still a
    # valid file, so negative data cannot be told from positive data for the upload.
    upload = _fuzz(
        live_server,
        tmp_path / "b",
        run_seed,
        examples,
        "--exclude-checks",
        "positive_data_acceptance,negative_data_rejection",
        "--include-operation-id",
        UPLOAD,
    )
    assert "Tested: 1" in upload


def test_openapi_fuzz(live_server: LiveServer, tmp_path: Path, fuzz_seed_value: int) -> None:
    _fuzz_everything(live_server, tmp_path, fuzz_seed_value, DEFAULT_EXAMPLES)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_openapi_fuzz_deep(live_server: LiveServer, tmp_path: Path, fuzz_seed_value: int) -> None:
    _fuzz_everything(live_server, tmp_path, fuzz_seed_value, DEEP_EXAMPLES)


# --- stateful: create → get → list ---------------------------------------------------------------


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# (create path, id field of the request or None when the response assigns it, list path,
# the list's id field, a body that makes a create succeed)
RESOURCES = {
    "models": ("/v1/models", "model_id", "/v1/models", "id", {"provider_id": "fake-vllm"}),
    "shields": ("/v1/shields", "shield_id", "/v1/shields", "identifier", {}),
    # Newest first: a new store is on the first page.
    "vector_stores": ("/v1/vector_stores", None, "/v1/vector_stores?limit=10", "id", {}),
}


def _listed(url: str, path: str, field: str) -> set[str]:
    reply = httpx.get(f"{url}{path}", timeout=60)
    assert reply.status_code == 200, f"listing {path} after a create: {reply.text[:500]}"
    return {item[field] for item in reply.json()["data"]}


def _check_create_then_list(url: str, kind: str, body: Any, run_seed: int) -> None:
    """Whatever the create answers, GET and the listing agree with it: a 2xx is retrievable
    and listed; anything else left nothing behind; nothing is a 5xx."""
    create, id_field, listing, list_field, _ = RESOURCES[kind]
    before = _listed(url, listing, list_field)
    reply = httpx.post(f"{url}{create}", json=body, timeout=60)
    context = f"seed {run_seed}: POST {create} {str(body)[:300]} → {reply.status_code}"
    assert reply.status_code < 500, f"{context} {reply.text[:300]}"
    after = _listed(url, listing, list_field)
    if reply.status_code == 200:
        created = reply.json()[list_field]
        assert created in after, context
        path = f"{create}/{quote(created, safe='/')}"
        assert httpx.get(f"{url}{path}", timeout=60).status_code == 200, context
        assert httpx.delete(f"{url}{path}", timeout=60).status_code == 200, context
    else:
        assert not after - before, f"{context}: a refused create left {after - before}"
        if id_field and isinstance(body, dict) and isinstance(body.get(id_field), str):
            path = f"{create}/{quote(body[id_field], safe='/')}"
            if body[id_field] not in before:
                assert httpx.get(f"{url}{path}", timeout=60).status_code in (400, 404), context


def _bodies(url: str, kind: str) -> st.SearchStrategy[Any]:
    """Bodies schemathesis generates for the create operation (valid and invalid), half of
    the valid ones steered to succeed (a configured provider)."""
    import schemathesis
    from schemathesis import GenerationMode

    create, _, _, _, succeed = RESOURCES[kind]
    operation = schemathesis.openapi.from_url(f"{url}/openapi.json")[create]["POST"]
    generated = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ).map(
        lambda case: case.body if isinstance(case.body, dict | list | str | int | float) else None
    )

    def steer(body: Any, flag: bool) -> Any:
        if kind == "vector_stores" and isinstance(body, dict):
            # Known: a store created with unknown file_ids is saved, then answered 404
            # (test_store_refused_for_its_files_leaves_nothing). Left out so the rest is fuzzed.
            body = {k: v for k, v in body.items() if k != "file_ids"}
        return {**body, **succeed} if flag and isinstance(body, dict) else body

    return st.tuples(generated, st.booleans()).map(lambda pair: steer(*pair))


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_created_resources_are_listed(
    live_server: LiveServer, kind: str, fuzz_seed_value: int
) -> None:
    _stateful(live_server, kind, fuzz_seed_value, STATEFUL_EXAMPLES)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_created_resources_are_listed_deep(
    live_server: LiveServer, kind: str, fuzz_seed_value: int
) -> None:
    _stateful(live_server, kind, fuzz_seed_value, DEEP_STATEFUL_EXAMPLES)


# Known offenders, always tried first: each was a 500 that was saved and broke the listing.
_DEEP_BODIES = {
    "models": {"model_id": "deep-m", "provider_id": "fake-vllm", "metadata": _deep(300)},
    "shields": {"shield_id": "deep-s", "params": _deep(300)},
    "vector_stores": {"name": "deep-v", "metadata": {"k": _deep(300)}},
}


def _stateful(live_server: LiveServer, kind: str, run_seed: int, examples: int) -> None:
    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @example(body=_DEEP_BODIES[kind])
    @given(body=_bodies(live_server.url, kind))
    def check(body: Any) -> None:
        _check_create_then_list(live_server.url, kind, body, run_seed)

    check()


def test_store_refused_for_its_files_leaves_nothing(live_server: LiveServer) -> None:
    """Found by the stateful fuzz: the create answers 404, the client never gets the id, and
    the store is saved anyway."""
    _check_create_then_list(
        live_server.url, "vector_stores", {"name": "orphan", "file_ids": ["file-nope"]}, 0
    )
