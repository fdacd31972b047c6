"""Parsing and token chunking (no I/O beyond the packaged tokenizer file)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamda.services import documents
from llamda.services.document_worker import document_chunks_isolated
from llamda.services.documents import (
    DocumentError,
    DocumentLimits,
    chunk_text,
    count_tokens,
    document_chunks,
    kind_of,
    to_text,
    tokenizer,
)
from tests.hostile_docs import nested_json, nested_pdf, shared_stream_pdf
from tests.pdf import make_pdf


def test_tokenizer_ships_in_the_package_and_counts_offline() -> None:
    assert tokenizer().get_vocab_size() == 30522  # BERT uncased WordPiece
    assert count_tokens("Llamas are camelids.") == 7  # llama ##s are camel ##id ##s .


@pytest.mark.parametrize(("size", "overlap"), [(100, 0), (100, 20), (150, 75), (800, 400)])
def test_chunks_are_overlapping_windows_on_word_boundaries(size: int, overlap: int) -> None:
    text = " ".join(f"alpha{i} beta gamma." for i in range(600))
    chunks = chunk_text(text, size, overlap)
    total = count_tokens(text)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(0 < c.token_count <= size for c in chunks)
    # Whole words only: a chunk's text re-tokenizes to exactly its tokens.
    assert all(count_tokens(c.text) == c.token_count for c in chunks)
    assert all(text.find(c.text) >= 0 for c in chunks)
    assert chunks[0].text.startswith("alpha0") and text.endswith(chunks[-1].text)
    positions = [text.find(c.text) for c in chunks]
    assert positions == sorted(positions)
    for a, pa, pb in zip(chunks, positions, positions[1:], strict=False):
        end_a = pa + len(a.text)
        assert pb < end_a if overlap else pb >= end_a - 1  # overlapping (or adjacent)
        if overlap:
            shared = count_tokens(text[pb:end_a])
            assert overlap - 3 <= shared <= overlap  # a word may shift the start by a few tokens
    covered = sum(c.token_count for c in chunks)
    assert covered >= total


def test_chunk_text_keeps_original_casing_and_accents() -> None:
    (chunk,) = chunk_text("Vicuñas LIVE in Perú.", 50, 0)
    assert chunk.text == "Vicuñas LIVE in Perú."


def test_overlap_must_be_smaller_than_size() -> None:
    with pytest.raises(ValueError):
        chunk_text("x", 10, 10)


@pytest.mark.parametrize(
    ("name", "content_type", "kind"),
    [
        ("a.md", None, "txt"),
        ("A.PDF", None, "pdf"),
        ("x", "application/pdf", "pdf"),
        ("page.htm", None, "html"),
        ("data.json", None, "json"),
        ("t.csv", None, "csv"),
        ("notes", "text/plain; charset=utf-8", "txt"),
        ("image.png", None, None),
        ("archive.zip", "application/zip", None),
    ],
)
def test_kind_of(name: str, content_type: str | None, kind: str | None) -> None:
    assert kind_of(name, content_type) == kind


def test_parsers() -> None:
    html = b"<html><head><style>p{}</style></head><body><p>One&nbsp;two</p><script>x()</script><li>three</li></body></html>"
    assert to_text(html, "p.html") == "One two\nthree"
    assert json.loads(to_text(b'{"a": [1, "\xc3\xa9"]}', "d.json")) == {"a": [1, "é"]}
    assert to_text(b"name,age\nann,3\nbob,\n", "t.csv") == "name: ann; age: 3\nname: bob"
    assert "Alpacas" in to_text(make_pdf(["Alpacas hum."]), "a.pdf")
    assert to_text("\ufeffBOM text".encode(), "a.txt") == "BOM text"


@pytest.mark.parametrize(
    ("data", "name", "code"),
    [
        (b"\x89PNG\r\n", "a.png", "unsupported_file"),
        (b"%PDF-1.4 broken", "a.pdf", "invalid_file"),
        (b"{not json", "a.json", "invalid_file"),
        # Valid JSON, but "\ud800" decodes to no text any store or embedder can take.
        (b'{"a": "x\\ud800y"}', "a.json", "invalid_file"),
        (b'["\\udfff"]', "a.json", "invalid_file"),
        (b"\xff\xfe\x00t\x00e", "a.txt", "invalid_file"),
        (b"\xc3\x28 bad utf8", "a.txt", "invalid_file"),
        (b"   \n\t ", "a.txt", "invalid_file"),
    ],
)
def test_unreadable_files_raise_document_error(data: bytes, name: str, code: str) -> None:
    with pytest.raises(DocumentError) as err:
        to_text(data, name)
    assert err.value.code == code and name in err.value.message


# --- hostile input: every parser fails with our typed error, never anything else -----------

NAMES = ["a.txt", "a.md", "a.html", "a.json", "a.csv", "a.pdf"]
PARSER_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _text_or_document_error(data: bytes, name: str) -> None:
    try:
        assert isinstance(to_text(data, name), str)
    except DocumentError as exc:
        assert exc.code in {"invalid_file", "unsupported_file"} and name in exc.message


@PARSER_SETTINGS
@given(data=st.binary(max_size=4096), name=st.sampled_from(NAMES))
def test_arbitrary_bytes_give_text_or_document_error(data: bytes, name: str) -> None:
    _text_or_document_error(data, name)


@PARSER_SETTINGS
@given(text=st.text(max_size=2048), name=st.sampled_from(NAMES))
def test_arbitrary_text_gives_text_or_document_error(text: str, name: str) -> None:
    _text_or_document_error(text.encode(), name)


@PARSER_SETTINGS
@given(
    cut=st.integers(min_value=0, max_value=2000),
    junk=st.binary(min_size=1, max_size=64),
    lines=st.lists(st.text(max_size=40), min_size=1, max_size=5),
)
def test_damaged_pdfs_give_text_or_document_error(cut: int, junk: bytes, lines: list[str]) -> None:
    pdf = make_pdf([line.encode("latin-1", "replace").decode("latin-1") for line in lines])
    at = cut % len(pdf)
    _text_or_document_error(pdf[:at] + junk + pdf[at + len(junk) :], "a.pdf")


@PARSER_SETTINGS
@given(
    tags=st.lists(
        st.sampled_from(["<a", "<div>", "</div>", "<p>", "<script>", "&amp;", "<!--", "x", " "]),
        max_size=300,
    )
)
def test_tag_soup_html_gives_text_or_document_error(tags: list[str]) -> None:
    _text_or_document_error("".join(tags).encode(), "a.html")


@pytest.mark.parametrize(
    ("name", "data"), [("deep.json", nested_json(2_000)), ("deep.pdf", nested_pdf(5_000))]
)
def test_deep_nesting_is_a_document_error_not_a_recursion_error(name: str, data: bytes) -> None:
    with pytest.raises(DocumentError, match="nested too deeply") as err:
        to_text(data, name)
    assert err.value.code == "invalid_file"


def test_deep_html_nesting_is_text_or_a_document_error() -> None:
    _text_or_document_error(b"<div>" * 2_000 + b"x", "deep.html")


def test_limits_name_the_setting() -> None:
    pdf = shared_stream_pdf(pages=8, stream_bytes=100_000)
    with pytest.raises(DocumentError, match=r"more than 4 pages.*max_pages"):
        to_text(pdf, "b.pdf", limits=DocumentLimits(max_pages=4))
    with pytest.raises(DocumentError, match=r"more than 300,000 decoded bytes.*max_decoded_bytes"):
        to_text(pdf, "b.pdf", limits=DocumentLimits(max_decoded_bytes=300_000))
    with pytest.raises(DocumentError, match=r"more than 10 bytes.*max_decoded_bytes"):
        to_text(b"eleven byte", "a.txt", limits=DocumentLimits(max_decoded_bytes=10))
    with pytest.raises(DocumentError, match=r"more than 1,000 tokens.*max_tokens"):
        document_chunks(b"word " * 5_000, "a.txt", None, 800, 400, DocumentLimits(max_tokens=1_000))


def test_long_texts_chunk_as_one_tokenization(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokenized in segments (bounded memory), the chunks are those of the whole text."""
    text = "\n".join(f"Llama{i} alpaca-vicuña, guanaco; camelid{i}." for i in range(12_000))
    assert len(text) > 3 * documents._SEGMENT_CHARS
    chunks = chunk_text(text, 800, 100)
    assert sum(c.token_count for c in chunks) >= count_tokens(text)
    monkeypatch.setattr(documents, "_SEGMENT_CHARS", 10 * len(text))  # one segment
    assert chunk_text(text, 800, 100) == chunks


# --- the worker process -------------------------------------------------------------------


def _isolated(data: bytes, name: str, limits: DocumentLimits, seconds: float) -> list:
    return asyncio.run(document_chunks_isolated(data, name, None, 800, 400, limits, seconds))


def test_worker_returns_chunks_and_typed_errors() -> None:
    (chunk,) = _isolated(b"Llamas hum.", "a.txt", DocumentLimits(), 30)
    assert chunk.text == "Llamas hum." and chunk.token_count == count_tokens("Llamas hum.")
    with pytest.raises(DocumentError, match="nested too deeply"):
        _isolated(nested_json(2_000), "deep.json", DocumentLimits(), 30)


def test_worker_past_its_time_is_killed() -> None:
    with pytest.raises(DocumentError, match=r"longer than 0.5 s.*max_seconds"):
        _isolated(shared_stream_pdf(), "bomb.pdf", DocumentLimits(), 0.5)
    assert multiprocessing.active_children() == []  # killed and reaped


def test_ingest_keys_name_the_tenant_first() -> None:
    from llamda.services.ingest import IngestError, parse_key

    assert parse_key("ingest/acme/vs_1/notes/a b.md") == ("acme", "vs_1", "a b.md")
    with pytest.raises(IngestError, match="name the tenant first"):
        parse_key("ingest/vs_1/a.md")  # the layout before tenants
    for bad in ("ingest/../vs_1/a.md", "ingest/_system/vs_1/a.md", "ingest//vs_1/a.md", "x/a/b/c"):
        with pytest.raises(IngestError):
            parse_key(bad)


def test_accepted_types_are_one_list_shown_in_the_readme() -> None:
    """kind_of, `llamda ingest --help` and the README name the same file types."""
    import re

    from llamda.services.documents import ACCEPTED_SUFFIXES, kind_of

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("Accepted file types") :].split("\n\n", 1)[0]
    assert set(re.findall(r"(?<![\w/])\.[a-z]+\b", section)) == set(ACCEPTED_SUFFIXES)
    for name in ("rows.jsonl", "conf.yaml", "pyproject.toml", "main.rs", "Query.SQL"):
        assert kind_of(name, None) == "txt", name
    assert kind_of("logo.png", None) is None


def test_a_worker_result_larger_than_the_pipe_reaches_a_uvloop_parent() -> None:
    """A forked worker's result (here ~2 MB of chunks, far more than a pipe buffer) arrives
    whole in a uvloop parent too (libuv makes the polled pipe non-blocking), several times."""
    uvloop = pytest.importorskip("uvloop")
    data = ("alpaca llama vicuna guanaco. " * 40_000).encode()

    async def read() -> list[int]:
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        return [
            len(
                await document_chunks_isolated(
                    data, "a.txt", "text/plain", 512, 64, DocumentLimits(), 60
                )
            )
            for _ in range(3)
        ]

    counts = uvloop.run(read())
    assert counts[0] > 500 and counts == [counts[0]] * 3
