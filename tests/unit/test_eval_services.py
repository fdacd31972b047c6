"""The interface eval jobs use: DatasetsService.rows/count/get and ScoringService.functions /
score_rows (chunk by chunk) / aggregate, on real storage (SQLite records, local objects)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamda.api.inference import ChatCompletion, ChatCompletionRequest
from llamda.config import EvalConfig, LocalObjects
from llamda.errors import BadRequestError, ConflictError, NotFoundError
from llamda.services.eval import formats
from llamda.services.eval.datasets import DatasetsService
from llamda.services.eval.scoring import ScoringService
from llamda.services.files import FilesService
from llamda.storage.objects_local import LocalObjectStore
from llamda.storage.records_sqlite import SqliteRecordStore

DATA = Path(__file__).resolve().parents[1] / "data" / "eval_multiple_choice.jsonl"
MC = "basic::regex_parser_multiple_choice_answer"


async def _no_chat(request: ChatCompletionRequest) -> ChatCompletion:
    raise AssertionError("basic functions call no model")


async def _no_model(model_id: str) -> None:
    raise AssertionError("basic functions name no judge")


def _services(tmp_path: Path) -> tuple[DatasetsService, ScoringService]:
    records = SqliteRecordStore(str(tmp_path / "records.sqlite3"))
    objects = LocalObjectStore(str(tmp_path / "objects"))
    config = EvalConfig()
    datasets = DatasetsService(
        config,
        LocalObjects(type="local", root=str(tmp_path / "objects")),
        records,
        objects,
        FilesService(records, objects),
    )
    return datasets, ScoringService(config, records, _no_chat, _no_model, datasets)


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text().splitlines()]


def test_chunked_scoring_aggregates_like_scoring_everything_at_once(tmp_path: Path) -> None:
    async def run() -> None:
        datasets, scoring = _services(tmp_path)
        await datasets.register(
            purpose="eval/question-answer",
            source={"type": "rows", "rows": _rows()},
            metadata=None,
            dataset_id="mc",
        )
        assert await datasets.count("mc") == 30
        assert (await datasets.get("mc"))["purpose"] == "eval/question-answer"
        assert await datasets.rows("mc", 28) == _rows()[28:]
        assert await datasets.rows("mc", 3, 2) == _rows()[3:5]

        spec = {MC: None, "basic::subset_of": {"aggregation_functions": ["accuracy", "median"]}}
        fns = await scoring.functions(spec)
        scored: dict[str, list[dict[str, Any]]] = {name: [] for name in fns}
        for start in range(0, 30, 7):  # as an eval job does: chunk by chunk
            chunk = await datasets.rows("mc", start, 7)
            for name, fn in fns.items():
                scored[name] += await scoring.score_rows(fn, chunk, start_index=start)
        at_once = await scoring.score(_rows(), spec)
        for name, fn in fns.items():
            assert scored[name] == at_once[name]["score_rows"]
            assert scoring.aggregate(fn, scored[name]) == at_once[name]["aggregated_results"]
        assert at_once[MC]["aggregated_results"]["accuracy"]["num_correct"] == 18
        assert at_once["basic::subset_of"]["aggregated_results"]["median"] == {"median": 1.0}

        broken = _rows()[21:28]
        del broken[2]["generated_answer"]
        with pytest.raises(BadRequestError, match=r'^row 23: missing column "generated_answer"'):
            await scoring.score_rows(fns[MC], broken, start_index=21)
        with pytest.raises(NotFoundError, match="basic::nope"):
            await scoring.functions({"basic::nope": None})
        with pytest.raises(BadRequestError, match="weighted_average"):
            await scoring.functions({MC: {"aggregation_functions": ["weighted_average"]}})
        with pytest.raises(NotFoundError):
            await datasets.rows("absent")

    asyncio.run(run())


def test_aggregates_of_nothing_and_of_scored_errors_are_defined(tmp_path: Path) -> None:
    async def run() -> None:
        _, scoring = _services(tmp_path)
        every = ["accuracy", "average", "median", "categorical_count"]
        fn = (await scoring.functions({"basic::equality": {"aggregation_functions": every}}))[
            "basic::equality"
        ]
        assert scoring.aggregate(fn, []) == {
            "accuracy": {"accuracy": None, "num_correct": 0, "num_total": 0},
            "average": {"average": None},
            "median": {"median": None},
            "categorical_count": {"categorical_count": {}},
        }
        rows = [{"score": 1.0}, {"score": None, "error": "x"}, {"score": 0.0}, {"score": 1.0}]
        assert scoring.aggregate(fn, rows) == {
            "accuracy": {"accuracy": 0.5, "num_correct": 2.0, "num_total": 4},
            "average": {"average": 2 / 3},
            "median": {"median": 1.0},
            "categorical_count": {"categorical_count": {"0.0": 1, "1.0": 2, "None": 1}},
        }

    asyncio.run(run())


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["x.jsonl", "x.csv", "x.json", "x.parquet", "noext"]),
    data=st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=300).map(lambda b: b"PAR1" + b),
        st.text(max_size=300).map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.text(max_size=5),
            lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids),
            max_leaves=10,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_any_source_bytes_give_rows_or_a_400(name: str, data: bytes) -> None:
    """Whatever a source holds, reading and checking it ends in rows or a BadRequestError
    (never another exception: that would be a 5xx)."""
    try:
        rows = formats.parse_rows(name, data, max_rows=50, max_bytes=10_000)
        formats.check_rows("eval/question-answer", rows)
        formats.to_jsonl(rows)
    except BadRequestError:
        pass


def test_deep_nesting_and_nan_are_400s() -> None:
    deep = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
    with pytest.raises(BadRequestError, match="row 0: invalid JSON"):
        formats.parse_rows("x.jsonl", deep, max_rows=5, max_bytes=10**7)
    nan = b'{"input_query": "q", "expected_answer": "a", "x": NaN}\n'
    rows = formats.parse_rows("x.jsonl", nan, max_rows=5, max_bytes=1000)
    with pytest.raises(BadRequestError, match="row 0: cannot be stored as JSON"):
        formats.to_jsonl(rows)


def test_rows_are_the_callers_to_change_and_a_lost_snapshot_is_a_409(tmp_path: Path) -> None:
    async def run() -> None:
        datasets, _ = _services(tmp_path)
        await datasets.register(
            purpose="eval/question-answer",
            source={"type": "rows", "rows": _rows()[:3]},
            metadata=None,
            dataset_id="small",
        )
        first = await datasets.rows("small")
        first[0]["generated_answer"] = "changed by an eval job"
        assert await datasets.rows("small") == _rows()[:3]
        objects = LocalObjectStore(str(tmp_path / "objects"))
        for key in await objects.list("datasets"):
            await objects.delete(key)
        fresh, _ = _services(tmp_path)  # another process: nothing cached
        with pytest.raises(ConflictError, match="lost its rows"):
            await fresh.rows("small")

    asyncio.run(run())
