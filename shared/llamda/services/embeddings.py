"""What one embeddings request asks of a model, and the reply in the form the client chose.

One place for the rules every provider shares, so no provider re-implements them:

- ``encoding_format``: providers always return floats; ``base64`` is applied here, as OpenAI
  encodes it (little-endian float32, base64 of the packed bytes).
- ``dimensions``: a model declares which output sizes it can produce in its metadata —
  ``supported_dimensions: [256, 512, 1024]`` (exactly those) or ``supported_dimensions: any``
  (any size from 1 to its ``embedding_dimension``, e.g. OpenAI's text-embedding-3). Asking for
  the model's own ``embedding_dimension`` is always fine (nothing to pass on); anything else is
  a 400 naming ``dimensions``.
"""

from __future__ import annotations

import base64
from array import array
from typing import Any

from llamda.api.inference import (
    MAX_EMBEDDING_DIMENSION,
    Embedding,
    EmbeddingsRequest,
    EmbeddingsResponse,
)
from llamda.api.models import Model
from llamda.errors import BadRequestError, UpstreamError

SUPPORTED_DIMENSIONS = "supported_dimensions"


def check_declaration(metadata: dict[str, Any]) -> None:
    """A registration's ``supported_dimensions``, if any, is ``any`` or a list of sizes
    (BadRequestError naming it otherwise)."""
    declared = metadata.get(SUPPORTED_DIMENSIONS)
    if declared is None or declared == "any":
        return
    if not (
        isinstance(declared, list)
        and 0 < len(declared) <= 64
        and all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_EMBEDDING_DIMENSION
            for d in declared
        )
    ):
        raise BadRequestError(
            f"metadata.{SUPPORTED_DIMENSIONS}: 'any' or a list of up to 64 sizes from 1 to "
            f"{MAX_EMBEDDING_DIMENSION}",
            param=f"metadata.{SUPPORTED_DIMENSIONS}",
        )


def upstream_request(request: EmbeddingsRequest, model: Model) -> EmbeddingsRequest:
    """The request a provider receives for ``model``: floats, and ``dimensions`` only where the
    model declares it can honour it (BadRequestError naming ``dimensions`` otherwise)."""
    dimensions = request.dimensions
    if dimensions is not None and not passes_dimensions(model, dimensions):
        dimensions = None  # the model's own size: nothing to ask of the provider
    return request.model_copy(update={"encoding_format": "float", "dimensions": dimensions})


def passes_dimensions(model: Model, dimensions: int, param: str = "dimensions") -> bool:
    """Whether ``dimensions`` goes to the provider (True) or is the model's own size (False);
    BadRequestError naming ``param`` when the model cannot produce it."""
    native = model.metadata.get("embedding_dimension")
    declared: Any = model.metadata.get(SUPPORTED_DIMENSIONS)
    if declared == "any" and isinstance(native, int) and 1 <= dimensions <= native:
        return True
    if isinstance(declared, list) and dimensions in declared:
        return True
    if dimensions == native or (native is None and declared is None):
        return False  # its own size (or unknown: the reply's size is checked)
    if declared == "any" and isinstance(native, int):
        supported = f"1 to {native}"
    elif isinstance(declared, list):
        supported = ", ".join(str(d) for d in declared)
    else:
        supported = f"only its own size{f', {native}' if isinstance(native, int) else ''}"
    raise BadRequestError(
        f"model '{model.id}' cannot produce {dimensions}-dimensional embeddings (supported: "
        f"{supported}; a model declares others in metadata.{SUPPORTED_DIMENSIONS})",
        param=param,
        code="unsupported_dimensions",
    )


def client_reply(reply: EmbeddingsResponse, request: EmbeddingsRequest) -> EmbeddingsResponse:
    """The provider's float reply checked against ``dimensions`` and encoded as asked."""
    for item in reply.data:
        vector = item.embedding
        if isinstance(vector, str):  # a provider that encoded anyway: decode it once
            vector = decode_base64(vector)
            item.embedding = vector
        if request.dimensions is not None and len(vector) != request.dimensions:
            # An upstream that ignored the parameter: never hand back vectors of another size.
            raise UpstreamError(
                f"the provider returned {len(vector)}-dimensional embeddings for "
                f"dimensions={request.dimensions}",
                status_code=502,
                code="upstream_bad_response",
            )
    if request.encoding_format == "base64":
        reply.data = [
            Embedding(index=item.index, embedding=encode_base64(item.embedding))  # type: ignore[arg-type]
            for item in reply.data
        ]
    return reply


def encode_base64(vector: list[float]) -> str:
    """OpenAI's base64 embedding: the vector as little-endian float32, base64-encoded."""
    packed = array("f", vector)
    if packed.itemsize != 4:  # pragma: no cover - every platform Python supports has 4
        raise RuntimeError("float32 array items are not 4 bytes")
    if array("H", [1]).tobytes() != b"\x01\x00":  # big-endian host: swap to little-endian
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def decode_base64(text: str) -> list[float]:
    packed = array("f")
    packed.frombytes(base64.b64decode(text))
    if array("H", [1]).tobytes() != b"\x01\x00":
        packed.byteswap()
    return packed.tolist()
