"""Bounds on client input, shared by every API model: free-form JSON objects, numbers that must
fit what storage holds, and the search query length. Each breach is a validation error on the
field, so the client gets a 400 naming it."""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 16 * 1024
MAX_JSON_KEYS = 512  # keys in all nested objects together
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_EMBEDDING_DIMENSION = 16_384
MAX_TTL_SECONDS = 10 * 366 * 86_400  # ten years: now + ttl always fits an int64 timestamp
DEFAULT_MAX_QUERY_CHARS = 8_192

# The search query limit is the run config's ``server.max_query_chars``; create_app sets it.
_limits = {"max_query_chars": DEFAULT_MAX_QUERY_CHARS}


def configure(*, max_query_chars: int) -> None:
    """Apply the run config's request limits (one config per process)."""
    _limits["max_query_chars"] = max_query_chars


def max_query_chars() -> int:
    return _limits["max_query_chars"]


def _error(kind: str, message: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, ctx or None)


def check_number(value: Any) -> Any:
    """A JSON number storage can hold: finite, and an integer within 64 bits."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise _error("int_too_large", "integers must fit in 64 bits (±9223372036854775807)")
    if isinstance(value, float) and not math.isfinite(value):
        raise _error("finite_number", "numbers must be finite (no NaN or Infinity)")
    return value


def check_json(
    value: Any,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_bytes: int = MAX_JSON_BYTES,
    max_keys: int = MAX_JSON_KEYS,
) -> Any:
    """A free-form JSON value within bounds: nesting depth, keys, numbers, serialized size.
    Walked iteratively, so a hostile depth costs no recursion."""
    keys = nodes = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_bytes:  # every value is at least one byte of JSON: stop walking early
            raise _error(
                "json_too_large", "is larger than {max_bytes} bytes as JSON", max_bytes=max_bytes
            )
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise _error(
                    "json_too_deep", "nests deeper than {max_depth} levels", max_depth=max_depth
                )
            if isinstance(item, dict):
                keys += len(item)
                if keys > max_keys:
                    raise _error(
                        "json_too_many_keys", "has more than {max_keys} keys", max_keys=max_keys
                    )
                children = item.values()
            else:
                children = item
            stack.extend((child, depth + 1) for child in children)
        else:
            check_number(item)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > max_bytes:
        raise _error(
            "json_too_large",
            "is larger than {max_bytes} bytes as JSON ({size} bytes)",
            max_bytes=max_bytes,
            size=size,
        )
    return value


def json_bounds(
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    max_keys: int = MAX_JSON_KEYS,
) -> AfterValidator:
    """The validator of a free-form JSON field with other bounds than ``JsonObject``'s."""
    return AfterValidator(
        partial(check_json, max_depth=max_depth, max_bytes=max_bytes, max_keys=max_keys)
    )


# Free-form maps (metadata, params): bounded depth, keys and size.
JsonObject = Annotated[
    dict[str, Any],
    AfterValidator(check_json),
    Field(description=f"A JSON object: at most {MAX_JSON_DEPTH} levels, {MAX_JSON_BYTES} bytes."),
]

# Numbers whose storage is a 32- or 64-bit integer.
NonNegInt32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
EmbeddingDimension = Annotated[int, Field(ge=1, le=MAX_EMBEDDING_DIMENSION)]
# A JSON scalar checked before a union picks a branch (2**70 would otherwise become a float).
BoundedNumber = BeforeValidator(check_number)


def check_query(value: str) -> str:
    limit = max_query_chars()
    if len(value) > limit:
        raise _error(
            "query_too_long",
            "is longer than {limit} characters (server.max_query_chars)",
            limit=limit,
        )
    return value


QueryText = Annotated[str, AfterValidator(check_query)]
