"""Dataset rows from bytes (JSONL, a JSON array, CSV, Parquet), rows checked against a purpose,
and rows as the JSONL we store. Every problem is a 400 naming the row (0-based, as iterrows
counts) and, where there is one, the column."""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
from collections.abc import Iterable
from typing import Any

from llamda.errors import BadRequestError

Row = dict[str, Any]
PARQUET_MAGIC = b"PAR1"
# Parquet is compressed: what it may expand to, as a multiple of eval.max_bytes.
PARQUET_EXPANSION = 4
# Llama Stack's purposes and the columns each needs (string columns; messages: a chat).
QUESTION_ANSWER = "eval/question-answer"
MESSAGES_ANSWER = "eval/messages-answer"
MESSAGE_COLUMNS = ("messages", "chat_completion_input")


def _bad(message: str, param: str = "source") -> BadRequestError:
    return BadRequestError(message, param=param, code="invalid_dataset")


def detect_format(name: str, data: bytes) -> str:
    """``jsonl``, ``json``, ``csv`` or ``parquet``: by the name's extension, else by content."""
    lowered = name.lower().rsplit("?", 1)[0]
    for ext, fmt in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "json"),
        (".csv", "csv"),
        (".parquet", "parquet"),
    ):
        if lowered.endswith(ext):
            return fmt
    if data.startswith(PARQUET_MAGIC):
        return "parquet"
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"{":
        return "jsonl"
    if head == b"[":
        return "json"
    return "csv"


def parse_rows(name: str, data: bytes, *, max_rows: int, max_bytes: int) -> list[Row]:
    """The rows of a source file. Raises 400 for unreadable content or too many rows."""
    fmt = detect_format(name, data)
    if fmt == "parquet":
        rows = _parquet(data, max_rows=max_rows, max_bytes=max_bytes)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _bad(f"the dataset is not UTF-8 text (byte {exc.start})") from None
        rows = {"jsonl": _jsonl, "json": _json_array, "csv": _csv}[fmt](text, max_rows)
    if len(rows) > max_rows:
        raise _bad(f"the dataset has more than {max_rows} rows (eval.max_rows)")
    return rows


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"{where}: invalid JSON ({str(exc)[:200]})") from None


def _jsonl(text: str, max_rows: int) -> list[Row]:
    rows: list[Row] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if len(rows) >= max_rows:
            raise _bad(f"the dataset has more than {max_rows} rows (eval.max_rows)")
        rows.append(_loads(line, f"row {len(rows)}"))
    return rows


def _json_array(text: str, max_rows: int) -> list[Row]:
    value = _loads(text, "the dataset")
    if not isinstance(value, list):
        raise _bad("a JSON dataset must be an array of row objects (or JSON lines)")
    return value


def _csv(text: str, max_rows: int) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[Row] = []
    try:
        for record in reader:
            if len(rows) >= max_rows:
                raise _bad(f"the dataset has more than {max_rows} rows (eval.max_rows)")
            if None in record:
                raise _bad(f"row {len(rows)}: more fields than the CSV header has columns")
            # A short line leaves its last columns None: that column is missing.
            rows.append({k: v for k, v in record.items() if v is not None})
    except csv.Error as exc:
        raise _bad(f"row {len(rows)}: unreadable CSV ({exc})") from None
    if reader.fieldnames is None:
        raise _bad("the CSV dataset is empty (no header line)")
    return rows


def _parquet(data: bytes, *, max_rows: int, max_bytes: int) -> list[Row]:
    try:  # only for Parquet sources: pyarrow is large to import (and not in the zip functions)
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise _bad(
            "Parquet sources need pyarrow, which this deployment does not have; use JSONL or CSV"
        ) from None

    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        meta = parquet.metadata
        if meta.num_rows > max_rows:
            raise _bad(f"the dataset has more than {max_rows} rows (eval.max_rows)")
        expanded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if expanded > max_bytes * PARQUET_EXPANSION:
            raise _bad(
                f"the Parquet dataset expands to {expanded} bytes, more than "
                f"{max_bytes * PARQUET_EXPANSION}"
            )
        return parquet.read().to_pylist()
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, BadRequestError):
            raise
        raise _bad(f"not a readable Parquet file ({str(exc)[:200]})") from None


def _json_default(value: Any) -> Any:
    """Parquet's non-JSON scalars as Llama Stack's JSON answers them."""
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"a {type(value).__name__} value")


def check_rows(purpose: str, rows: Iterable[Any], *, start_index: int = 0) -> None:
    """Every row is an object with the purpose's columns: 400 naming the first bad one."""
    for offset, row in enumerate(rows):
        index = start_index + offset
        if not isinstance(row, dict):
            raise _bad(f"row {index}: a row must be a JSON object", "rows")
        needed = ["input_query", "expected_answer"] if purpose == QUESTION_ANSWER else []
        if purpose == MESSAGES_ANSWER:
            needed = ["expected_answer"]
            if not any(col in row for col in MESSAGE_COLUMNS):
                raise _bad(
                    f'row {index}: missing column "messages" (or "chat_completion_input")', "rows"
                )
            column = next(col for col in MESSAGE_COLUMNS if col in row)
            if not _is_chat(row[column]):
                raise _bad(
                    f'row {index}: column "{column}" must be a list of messages '
                    '(objects with "role" and "content"), or that list as a JSON string',
                    "rows",
                )
        for column in needed:
            if column not in row:
                raise _bad(f'row {index}: missing column "{column}"', "rows")
            if not isinstance(row[column], str):
                raise _bad(f'row {index}: column "{column}" must be a string', "rows")


def _is_chat(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value = json.loads(value)
            # The string may hide a lone surrogate ("\\udfff"): no upstream can take it.
            json.dumps(value, ensure_ascii=False).encode()
        except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
            return False
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    )


def to_jsonl(rows: Iterable[Row], *, start_index: int = 0) -> list[bytes]:
    """Each row as one JSON line; 400 naming a row that JSON cannot hold (NaN, bytes...)."""
    lines = []
    for offset, row in enumerate(rows):
        try:
            text = json.dumps(
                row,
                ensure_ascii=False,
                allow_nan=False,
                separators=(",", ":"),
                default=_json_default,
            )
        except (TypeError, ValueError, RecursionError) as exc:
            raise _bad(
                f"row {start_index + offset}: cannot be stored as JSON ({str(exc)[:200]})", "rows"
            ) from None
        try:
            lines.append(text.encode() + b"\n")
        except UnicodeEncodeError:  # a file's "\ud800": parsed JSON, but no UTF-8 text
            raise _bad(
                f"row {start_index + offset}: has an unpaired UTF-16 surrogate escape "
                "(not valid Unicode text)",
                "rows",
            ) from None
    return lines


def from_jsonl(data: bytes) -> list[Row]:
    """Rows we stored (``to_jsonl``)."""
    return [json.loads(line) for line in data.splitlines() if line]
