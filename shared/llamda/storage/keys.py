"""Build storage keys from user input without letting it escape its prefix."""

from __future__ import annotations

import re

from llamda.errors import BadRequestError

# A code-defined name, optionally scoped by one of our ids: "files", "vector_store_files:vs_ab12".
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}(:[A-Za-z0-9_.-]{1,128})?$")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\]")
MAX_SEGMENT = 255


def check_kind(kind: str) -> str:
    """Record kinds are code-defined names ("models", "files"...), never user input."""
    if not _KIND_RE.match(kind):
        raise ValueError(f"invalid record kind {kind!r}")
    return kind


def safe_segment(value: str, *, param: str | None = None) -> str:
    """One path segment: no separators, no control characters, not '.' or '..'."""
    if (
        not value
        or len(value) > MAX_SEGMENT
        or value in {".", ".."}
        or _FORBIDDEN.search(value)
        or value != value.strip()
    ):
        raise BadRequestError(f"invalid identifier {value[:80]!r}", param=param, code="invalid_id")
    return value


def object_key(*segments: str) -> str:
    """Join checked segments into a relative object key ("files/file-abc")."""
    if not segments:
        raise ValueError("an object key needs at least one segment")
    return "/".join(safe_segment(s) for s in segments)


def split_key(key: str) -> list[str]:
    """Validate a relative key made by ``object_key`` and return its segments."""
    return [safe_segment(part) for part in key.split("/")]
