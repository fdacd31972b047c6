"""OpenAI attribute filters → each backend's form: LanceDB predicates (the SQL text, and run on a
real table against the common evaluator ``matches`` that FAISS uses)."""

from __future__ import annotations

import math
import re
from typing import Annotated

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import BeforeValidator, TypeAdapter, ValidationError

from llamda.api.vector_stores import ComparisonFilter, CompoundFilter, Filter, check_filter_shape
from llamda.errors import BadRequestError
from llamda.providers.vector_io.index import matches
from llamda.providers.vector_io.lancedb import compile_filter

parse = TypeAdapter(Filter).validate_python


def test_comparisons_by_value_type() -> None:
    assert compile_filter(parse({"type": "eq", "key": "team", "value": "o'neil"})) == (
        "(json_get_string(attributes, 'team') = 'o''neil' "
        "AND starts_with(json_extract(attributes, '$.team'), '\"'))"
    )
    assert compile_filter(parse({"type": "gte", "key": "year", "value": 2024})) == (
        "TRY_CAST(json_extract(attributes, '$.year') AS DOUBLE) >= 2024.0"
    )
    assert compile_filter(parse({"type": "ne", "key": "ok", "value": True})) == (
        "json_extract(attributes, '$.ok') = 'false'"
    )


def test_in_nin_and_compound() -> None:
    sql = compile_filter(
        parse(
            {
                "type": "or",
                "filters": [
                    {"type": "in", "key": "a", "value": ["x", 2]},
                    {"type": "and", "filters": [{"type": "nin", "key": "b", "value": ["y"]}]},
                ],
            }
        )
    )
    assert sql == (
        "(((json_get_string(attributes, 'a') = 'x' "
        "AND starts_with(json_extract(attributes, '$.a'), '\"')) OR "
        "TRY_CAST(json_extract(attributes, '$.a') AS DOUBLE) = 2.0) OR "
        "(((json_get_string(attributes, 'b') <> 'y' "
        "AND starts_with(json_extract(attributes, '$.b'), '\"')))))"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "eq", "key": "a') OR 1=1 --", "value": "x"},
        {"type": "eq", "key": "a", "value": ["x"]},
        {"type": "in", "key": "a", "value": "x"},
        {"type": "in", "key": "a", "value": []},
        {"type": "gt", "key": "a", "value": True},
        {"type": "like", "key": "a", "value": "x"},
        {"type": "and", "filters": []},
        {"type": "eq", "key": "a", "value": {"nested": 1}},
    ],
)
def test_bad_filters_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        parse(bad)


# --- properties (hypothesis) --------------------------------------------------------------------

# Keys and values as a hostile client sends them: quotes, SQL, JSON paths, unicode, numbers
# storage cannot hold.
_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=24) | st.sampled_from(
    ["x' OR '1'='1", "a'); DROP TABLE t; --", "$.a", "\\'", "''", "%", "NaN", "\u0000"]
)
_keys = st.from_regex(r"\A[A-Za-z0-9_-]{1,8}\Z") | _text
_numbers = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
)
_scalars = _text | st.booleans() | _numbers | st.none()
_ops = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "like", "and", "or"])
_valid_keys = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=8)
_valid_numbers = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(
    allow_nan=False, allow_infinity=False
)
# Mostly well-formed leaves (so many trees compile and their SQL is checked), some anything.
_well_formed = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
            "key": _valid_keys,
            "value": _text | _valid_numbers,
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["in", "nin"]),
            "key": _valid_keys,
            "value": st.lists(_text | _valid_numbers, min_size=1, max_size=4),
        }
    ),
)
_anything = st.fixed_dictionaries(
    {"type": _ops, "key": _keys, "value": _scalars | st.lists(_scalars, max_size=4)},
    optional={"filters": st.just([]), "extra": _scalars},
)
_leaves = st.one_of(*[_well_formed] * 8, _anything)
_trees = st.recursive(
    _leaves,
    lambda children: st.one_of(
        *[
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["and", "or"]),
                    "filters": st.lists(children, min_size=1, max_size=4),
                }
            )
        ]
        * 6,
        st.fixed_dictionaries(
            {"type": _ops, "filters": st.lists(children, max_size=4)}, optional={"key": _keys}
        ),
    ),
    max_leaves=16,
)

# The compiled SQL, literal by literal: every user string is inside a quoted literal.
_LITERAL = r"'(?:[^']|'')*'"
_TOKEN = re.compile(
    rf"\s*(?:(?P<lit>{_LITERAL})|json_get_string\(attributes, |json_extract\(attributes, "
    r"|starts_with\(|, "
    r"|TRY_CAST\(|\) AS DOUBLE\)|-?(?:\d+\.\d*|\d*\.\d+|\d+)(?:e[+-]?\d+)?|<>|>=|<=|=|>|<"
    r"|\bAND\b|\bOR\b|\(|\))"
)


def _literals(sql: str) -> list[str]:
    """The SQL's string literals (unescaped); fails if anything is not an expected token."""
    out, pos = [], 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        assert match and match.end() > pos, f"unexpected SQL at {pos}: {sql[pos : pos + 40]!r}"
        if match.group("lit"):
            out.append(match.group("lit")[1:-1].replace("''", "'"))
        pos = match.end()
    return out


def _user_strings(node: Filter) -> set[str]:
    if isinstance(node, CompoundFilter):
        return set().union(*(_user_strings(f) for f in node.filters))
    values = node.value if isinstance(node.value, list) else [node.value]
    ours = {node.key, f"$.{node.key}", "true", "false", '"'}
    return ours | {v for v in values if isinstance(v, str)}


@settings(max_examples=200, deadline=None)
@given(raw=_trees)
def test_any_filter_tree_compiles_or_is_refused(raw: dict) -> None:
    """Arbitrary trees either fail validation (a 400 at the edge) or compile to SQL made only of
    our own tokens, with each user string a properly quoted literal."""
    try:
        node = TypeAdapter(Annotated[Filter, BeforeValidator(check_filter_shape)]).validate_python(
            raw
        )
    except ValidationError:
        event("refused at the edge")
        return
    try:
        sql = compile_filter(node)
    except BadRequestError:
        event("refused by the compiler")
        return
    event("compiled")
    literals = _literals(sql)
    assert set(literals) <= _user_strings(node)


@settings(max_examples=150, deadline=None)
@given(value=_numbers)
def test_numbers_compile_to_finite_literals_or_are_refused(value: int | float) -> None:
    try:
        node = parse({"type": "gte", "key": "n", "value": value})
    except ValidationError:
        assert (isinstance(value, float) and not math.isfinite(value)) or abs(value) >= 2**63
        return
    sql = compile_filter(node)
    number = sql.rsplit(" ", 1)[1]
    assert math.isfinite(float(number)) and float(number) == float(value)


# --- every backend keeps the same semantics ------------------------------------------------------

# Rows whose attributes mix types under the same keys (a number, a numeric string, a boolean,
# a missing key), so a compiler that coerces or matches across types shows.
_ROWS = [
    {"a": "x", "n": 5, "ok": True},
    {"a": "y", "n": 5.5, "ok": False},
    {"a": "5", "n": "5", "ok": "true"},
    {"a": 5, "n": -2},
    {"a": "o'neil", "n": 0, "ok": True},
    {"n": 1e3, "b": "x"},
    {"a": "true", "b": "y", "ok": False},
    {},
]
_KEYS = st.sampled_from(["a", "n", "ok", "b"])
_VALUES = st.sampled_from(["x", "y", "5", "true", "o'neil", 5, 5.5, -2, 0, 1000, True, False])
_LEAF = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
            "key": _KEYS,
            "value": _VALUES,
        }
    ).filter(lambda d: not (isinstance(d["value"], bool) and d["type"] not in ("eq", "ne"))),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["in", "nin"]),
            "key": _KEYS,
            "value": st.lists(
                _VALUES.filter(lambda v: not isinstance(v, bool)), min_size=1, max_size=3
            ),
        }
    ),
)
_TREE = st.recursive(
    _LEAF,
    lambda children: st.fixed_dictionaries(
        {
            "type": st.sampled_from(["and", "or"]),
            "filters": st.lists(children, min_size=1, max_size=3),
        }
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def lance_table(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real LanceDB table of ``_ROWS`` (written through the provider)."""
    import asyncio

    from llamda.config import VectorsConfig
    from llamda.providers.vector_io.index import ChunkRow, IndexContext
    from llamda.providers.vector_io.lancedb import LanceDBIndex

    uri = str(tmp_path_factory.mktemp("filters") / "lancedb")
    index = LanceDBIndex("lancedb", None, IndexContext(VectorsConfig(uri=uri)))
    rows = [
        ChunkRow(f"c{i}", f"f{i}", "f", 0, 1, "t", [1.0, 0.0], attributes=attributes)
        for i, attributes in enumerate(_ROWS)
    ]

    async def build() -> None:
        await index.create("s", 2)
        await index.upsert("s", rows, 2)

    asyncio.run(build())
    import lancedb

    return lancedb.connect(f"{uri}/tenants/default").open_table("s")


@settings(max_examples=150, deadline=None)
@given(raw=_TREE)
def test_lancedb_sql_and_the_common_evaluator_agree(raw: dict, lance_table) -> None:  # type: ignore[no-untyped-def]
    """The LanceDB compiler (SQL run by LanceDB) and ``matches`` (what FAISS and any backend
    without a query language use) pick the same rows for any filter tree."""
    node = parse(raw)
    sql = compile_filter(node)
    by_sql = {r["chunk_id"] for r in lance_table.search().where(sql).select(["chunk_id"]).to_list()}
    by_eval = {f"c{i}" for i, attributes in enumerate(_ROWS) if matches(node, attributes)}
    assert by_sql == by_eval, sql


def test_the_evaluator_refuses_keys_the_api_would() -> None:
    node = ComparisonFilter.model_construct(type="eq", key="a') OR 1=1 --", value="x")
    with pytest.raises(BadRequestError):
        matches(node, {"a": "x"})
    with pytest.raises(BadRequestError):
        compile_filter(node)
