"""Documents to text, text to token chunks.

Parsing: txt/md (and other text), html, json, csv, pdf (pypdf). Chunking counts tokens with the
WordPiece tokenizer of all-MiniLM-L6-v2 through Hugging Face ``tokenizers``: the tokenizer file
ships inside the package (``llamda/data/tokenizer.json``), so it works offline and in a VPC Lambda.
tiktoken was not chosen because it downloads its BPE files at run time.
"""

from __future__ import annotations

import csv
import io
import json
import mimetypes
from dataclasses import dataclass
from functools import cache
from html.parser import HTMLParser
from importlib import resources
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_NAME = "all-MiniLM-L6-v2-wordpiece"
# OpenAI's "auto" chunking strategy.
AUTO_MAX_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400

_TEXT_SUFFIXES = {
    ".txt", ".md", ".markdown", ".rst", ".log", ".py", ".js", ".ts", ".java", ".go", ".rb",
    ".c", ".h", ".cpp", ".cs", ".php", ".sh", ".tex", ".css", ".xml", ".yaml", ".yml", ".toml",
}  # fmt: skip


class DocumentError(Exception):
    """A file we cannot turn into text. ``code`` is OpenAI's last_error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TextChunk:
    index: int
    text: str
    token_count: int


def kind_of(filename: str, content_type: str | None) -> str | None:
    """txt, html, json, csv or pdf; None when unsupported."""
    suffix = PurePosixPath(filename.lower()).suffix
    mime = (content_type or mimetypes.guess_type(filename)[0] or "").split(";")[0].strip()
    if suffix == ".pdf" or mime == "application/pdf":
        return "pdf"
    if suffix in {".html", ".htm"} or mime == "text/html":
        return "html"
    if suffix == ".json" or mime == "application/json":
        return "json"
    if suffix == ".csv" or mime == "text/csv":
        return "csv"
    if suffix in _TEXT_SUFFIXES or mime.startswith("text/"):
        return "txt"
    return None


def to_text(data: bytes, filename: str, content_type: str | None = None) -> str:
    """The text of a document; DocumentError for unsupported or corrupt files."""
    kind = kind_of(filename, content_type)
    if kind is None:
        raise DocumentError(
            "unsupported_file",
            f"{filename!r}: unsupported file type (supported: txt, md, html, json, csv, pdf)",
        )
    if kind == "pdf":
        text = _pdf(data, filename)
    else:
        raw = _decode(data, filename)
        try:
            text = {"txt": lambda s: s, "html": _html, "json": _json, "csv": _csv}[kind](raw)
        except DocumentError as exc:
            raise DocumentError(exc.code, f"{filename!r}: {exc.message}") from None
    if not text.strip():
        raise DocumentError("invalid_file", f"{filename!r}: no text found")
    return text


def _decode(data: bytes, filename: str) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentError("invalid_file", f"{filename!r}: binary content in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError("invalid_file", f"{filename!r}: not UTF-8 text ({exc})") from None


def _pdf(data: bytes, filename: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        return "\n\n".join((page.extract_text() or "") for page in reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentError("invalid_file", f"{filename!r}: not a readable PDF ({exc})") from None


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _html(raw: str) -> str:
    parser = _TextExtractor()
    parser.feed(raw)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _json(raw: str) -> str:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DocumentError("invalid_file", f"invalid JSON: {exc}") from None
    return json.dumps(value, indent=1, ensure_ascii=False)


def _csv(raw: str) -> str:
    try:
        rows = list(csv.reader(io.StringIO(raw)))
    except csv.Error as exc:
        raise DocumentError("invalid_file", f"invalid CSV: {exc}") from None
    if not rows:
        return ""
    header, body = rows[0], rows[1:]
    if not body:
        return ", ".join(header)
    return "\n".join(
        "; ".join(f"{h}: {v}" for h, v in zip(header, row, strict=False) if v) for row in body
    )


@cache
def tokenizer() -> Tokenizer:
    from tokenizers import Tokenizer

    path = resources.files("llamda") / "data" / "tokenizer.json"
    tok = Tokenizer.from_str(path.read_text(encoding="utf-8"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def count_tokens(text: str) -> int:
    return len(tokenizer().encode(text, add_special_tokens=False).ids)


def chunk_text(text: str, max_tokens: int, overlap_tokens: int) -> list[TextChunk]:
    """Windows of at most ``max_tokens`` tokens, each starting about ``max_tokens -
    overlap_tokens`` after the previous one. Windows end and start on word boundaries (a word
    longer than a window is the exception), so chunk text re-tokenizes to the same tokens; the
    text is the original between the window's first and last token."""
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap must be smaller than the chunk size")
    encoding = tokenizer().encode(text, add_special_tokens=False)
    offsets, words = encoding.offsets, encoding.word_ids
    n = len(offsets)

    def splits_word(i: int) -> bool:  # token i continues the word of token i - 1
        return 0 < i < n and words[i] is not None and words[i] == words[i - 1]

    chunks: list[TextChunk] = []
    start = 0
    while start < n:
        end = min(start + max_tokens, n)
        while splits_word(end) and end > start + 1:
            end -= 1
        if splits_word(end):  # one word longer than the window: cut it
            end = min(start + max_tokens, n)
        piece = text[offsets[start][0] : offsets[end - 1][1]]
        chunks.append(TextChunk(len(chunks), piece, end - start))
        if end == n:
            break
        nxt = max(end - overlap_tokens, start + 1)
        while splits_word(nxt) and nxt < end:
            nxt += 1
        start = nxt
    return chunks
