"""Parsing and token chunking (no I/O beyond the packaged tokenizer file)."""

from __future__ import annotations

import json

import pytest

from llamda.services.documents import (
    DocumentError,
    chunk_text,
    count_tokens,
    kind_of,
    to_text,
    tokenizer,
)
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
        (b"\xff\xfe\x00t\x00e", "a.txt", "invalid_file"),
        (b"\xc3\x28 bad utf8", "a.txt", "invalid_file"),
        (b"   \n\t ", "a.txt", "invalid_file"),
    ],
)
def test_unreadable_files_raise_document_error(data: bytes, name: str, code: str) -> None:
    with pytest.raises(DocumentError) as err:
        to_text(data, name)
    assert err.value.code == code and name in err.value.message
