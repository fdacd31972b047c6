"""Documents to text, text to token chunks.

Parsing: txt/md (and other text), html (selectolax/lexbor: linear on tag soup such as
``"<a" * 40000``, which is quadratic in the stdlib parser), json, csv, pdf (pypdf). Every parser
failure, including a ``RecursionError`` on deep nesting, is a ``DocumentError``;
``DocumentLimits`` bound the decoded bytes, pages and tokens of one file. Some hostile files are
still slow (deeply nested HTML, PDF content streams): ``services/document_worker.py`` runs this
module in a worker process with a wall-time limit, so the server's event loop never parses.

Chunking counts tokens with the WordPiece tokenizer of all-MiniLM-L6-v2 through Hugging Face
``tokenizers``: the tokenizer file ships inside the package (``llamda/data/tokenizer.json``), so
it works offline and in a VPC Lambda. tiktoken was not chosen because it downloads its BPE files
at run time.
"""

from __future__ import annotations

import csv
import io
import json
import mimetypes
from array import array
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_NAME = "all-MiniLM-L6-v2-wordpiece"
# OpenAI's "auto" chunking strategy.
AUTO_MAX_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400

# The file types ingestion reads, by suffix: one list for the parser (kind_of), the API,
# `llamda ingest` (its --help and what it picks from directories) and the README. Other files
# whose content type is text/* (sent by an uploader) are read as text too.
_TEXT_SUFFIXES = (
    # documents and data
    ".txt", ".md", ".markdown", ".rst", ".log", ".tex", ".jsonl", ".ndjson", ".yaml", ".yml",
    ".toml", ".ini", ".cfg", ".xml", ".css",
    # source code, as text
    ".py", ".js", ".mjs", ".jsx", ".ts", ".tsx", ".java", ".kt", ".scala", ".go", ".rs", ".rb",
    ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".php", ".swift", ".sh", ".bash", ".sql", ".r",
    ".lua", ".pl",
)  # fmt: skip
ACCEPTED_SUFFIXES: dict[str, str] = {
    ".pdf": "pdf", ".html": "html", ".htm": "html", ".json": "json", ".csv": "csv",
    **dict.fromkeys(_TEXT_SUFFIXES, "txt"),
}  # fmt: skip


def accepted_types() -> str:
    """The accepted suffixes, for messages and --help."""
    return " ".join(ACCEPTED_SUFFIXES)


class DocumentError(Exception):
    """A file we cannot turn into text. ``code`` is OpenAI's last_error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DocumentLimits:
    """What one file may cost to read (the run config's ``storage.vectors.ingest``)."""

    max_decoded_bytes: int = 16 * 1024 * 1024  # text, or decompressed PDF page content
    max_pages: int = 2_000
    max_tokens: int = 2_000_000


UNLIMITED = DocumentLimits(2**62, 2**62, 2**62)


def _too_large(filename: str, what: str, limit: int, setting: str) -> DocumentError:
    return DocumentError(
        "invalid_file",
        f"{filename!r}: more than {limit:,} {what}, the per-file limit "
        f"(storage.vectors.ingest.{setting})",
    )


@dataclass(frozen=True)
class TextChunk:
    index: int
    text: str
    token_count: int


def kind_of(filename: str, content_type: str | None) -> str | None:
    """txt, html, json, csv or pdf; None when unsupported."""
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix in ACCEPTED_SUFFIXES:
        return ACCEPTED_SUFFIXES[suffix]
    mime = (content_type or mimetypes.guess_type(filename)[0] or "").split(";")[0].strip()
    if mime == "application/pdf":
        return "pdf"
    if mime == "text/html":
        return "html"
    if mime == "application/json":
        return "json"
    if mime == "text/csv":
        return "csv"
    if mime.startswith("text/"):
        return "txt"
    return None


def to_text(
    data: bytes,
    filename: str,
    content_type: str | None = None,
    limits: DocumentLimits = UNLIMITED,
) -> str:
    """The text of a document; DocumentError for unsupported, corrupt or too large files."""
    kind = kind_of(filename, content_type)
    if kind is None:
        raise DocumentError(
            "unsupported_file",
            f"{filename!r}: unsupported file type (supported: {accepted_types()})",
        )
    try:
        if kind == "pdf":
            text = _pdf(data, filename, limits)
        else:
            if len(data) > limits.max_decoded_bytes:
                raise _too_large(filename, "bytes", limits.max_decoded_bytes, "max_decoded_bytes")
            raw = _decode(data, filename)
            try:
                text = {"txt": lambda s: s, "html": _html, "json": _json, "csv": _csv}[kind](raw)
            except DocumentError as exc:
                raise DocumentError(exc.code, f"{filename!r}: {exc.message}") from None
    except RecursionError:
        # Deeply nested JSON, HTML or PDF objects: the file fails, never the request.
        raise DocumentError("invalid_file", f"{filename!r}: nested too deeply to read") from None
    if len(text.encode()) > limits.max_decoded_bytes:  # e.g. JSON re-indented, PDF text
        raise _too_large(filename, "bytes of text", limits.max_decoded_bytes, "max_decoded_bytes")
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


def _pdf(data: bytes, filename: str, limits: DocumentLimits) -> str:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        pages = len(reader.pages)
        if pages > limits.max_pages:
            raise _too_large(filename, "pages", limits.max_pages, "max_pages")
        decoded = 0
        for page in reader.pages:
            # What every page decompresses, before the slow part (text extraction) starts: a
            # small file may share one huge stream among many pages.
            contents = page.get_contents()
            decoded += len(contents.get_data()) if contents is not None else 0
            if decoded > limits.max_decoded_bytes:
                raise _too_large(
                    filename, "decoded bytes", limits.max_decoded_bytes, "max_decoded_bytes"
                )
        texts = [page.extract_text() or "" for page in reader.pages]
    except (DocumentError, RecursionError, MemoryError):
        raise
    except Exception as exc:  # pypdf raises many types on hostile input; all mean "unreadable"
        raise DocumentError(
            "invalid_file", f"{filename!r}: not a readable PDF ({type(exc).__name__}: {exc})"[:500]
        ) from None
    return "\n\n".join(texts)


_SKIP = ("script", "style", "noscript", "template", "head")
_BLOCK = "p,div,br,li,tr,h1,h2,h3,h4,h5,h6,pre"


def _html(raw: str) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(raw)
    tree.strip_tags(list(_SKIP))  # with their content
    if tree.root is None:
        return ""
    for node in tree.css(_BLOCK):  # blocks end lines
        node.insert_before("\n")
        node.insert_after("\n")
    text = tree.root.text(separator="", strip=False)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _json(raw: str) -> str:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DocumentError("invalid_file", f"invalid JSON: {exc}") from None
    text = json.dumps(value, indent=1, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:  # "\ud800" parses, but no store or embedder can take it
        raise DocumentError(
            "invalid_file", "invalid JSON: an unpaired UTF-16 surrogate escape"
        ) from None
    return text


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


class TooManyTokens(Exception):
    """More tokens than ``max_tokens`` (raised before all of the text is tokenized)."""


_SEGMENT_CHARS = 64_000


def _tokens(text: str, max_tokens: int | None) -> tuple[array[int], array[int], array[int]]:
    """Start and end offsets (characters) and word numbers (-1: none) of the text's tokens.

    The text is encoded in segments cut at whitespace, which no token spans (the BERT
    pre-tokenizer splits there), so the tokens are those of the whole text while memory stays
    bounded: a tokenizers ``Encoding`` costs hundreds of bytes per token, these arrays 24."""
    starts, ends, words = array("q"), array("q"), array("q")
    encode, pos, word_base = tokenizer().encode, 0, 0
    while pos < len(text):
        end = min(pos + _SEGMENT_CHARS, len(text))
        if end < len(text):
            cut = max(text.rfind(c, pos, end) for c in " \n\t\r")
            end = cut + 1 if cut > pos else end
        encoding = encode(text[pos:end], add_special_tokens=False)
        most = -1
        for (start, stop), word in zip(encoding.offsets, encoding.word_ids, strict=True):
            starts.append(pos + start)
            ends.append(pos + stop)
            words.append(-1 if word is None else word_base + word)
            most = max(most, -1 if word is None else word)
        word_base += most + 1
        pos = end
        if max_tokens is not None and len(starts) > max_tokens:
            raise TooManyTokens(max_tokens)
    return starts, ends, words


def chunk_text(
    text: str, max_tokens: int, overlap_tokens: int, *, token_limit: int | None = None
) -> list[TextChunk]:
    """Windows of at most ``max_tokens`` tokens, each starting about ``max_tokens -
    overlap_tokens`` after the previous one. Windows end and start on word boundaries (a word
    longer than a window is the exception), so chunk text re-tokenizes to the same tokens; the
    text is the original between the window's first and last token. ``TooManyTokens`` when
    the text has more than ``token_limit`` tokens."""
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap must be smaller than the chunk size")
    starts, ends, words = _tokens(text, token_limit)
    n = len(starts)

    def splits_word(i: int) -> bool:  # token i continues the word of token i - 1
        return 0 < i < n and words[i] != -1 and words[i] == words[i - 1]

    chunks: list[TextChunk] = []
    start = 0
    while start < n:
        end = min(start + max_tokens, n)
        while splits_word(end) and end > start + 1:
            end -= 1
        if splits_word(end):  # one word longer than the window: cut it
            end = min(start + max_tokens, n)
        piece = text[starts[start] : ends[end - 1]]
        chunks.append(TextChunk(len(chunks), piece, end - start))
        if end == n:
            break
        nxt = max(end - overlap_tokens, start + 1)
        while splits_word(nxt) and nxt < end:
            nxt += 1
        start = nxt
    return chunks


def document_chunks(
    data: bytes,
    filename: str,
    content_type: str | None,
    max_chunk_tokens: int,
    overlap_tokens: int,
    limits: DocumentLimits,
) -> list[TextChunk]:
    """A file's text in token chunks within ``limits`` (the document worker's whole job)."""
    text = to_text(data, filename, content_type, limits)
    try:
        return chunk_text(text, max_chunk_tokens, overlap_tokens, token_limit=limits.max_tokens)
    except TooManyTokens:
        raise _too_large(filename, "tokens", limits.max_tokens, "max_tokens") from None
