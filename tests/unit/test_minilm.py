"""The numpy all-MiniLM-L6-v2 encoder against sentence-transformers' published numbers.

The reference is the similarity matrix printed in sentence-transformers' quickstart for
all-MiniLM-L6-v2 (``model.similarity(embeddings, embeddings)``, rounded to 4 places).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from llamda.providers.inference.minilm import Cancelled, MiniLMEncoder, packaged_model_dir

QUICKSTART = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
PUBLISHED = np.array(
    [[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]], np.float32
)


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder(packaged_model_dir())


def test_matches_the_published_sentence_transformers_similarities(encoder: MiniLMEncoder) -> None:
    vectors, tokens = encoder.encode(QUICKSTART)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors @ vectors.T, PUBLISHED, atol=1e-3)
    assert tokens == 25  # 19 word pieces, [CLS] and [SEP] around each text


def test_related_sentences_score_clearly_higher(encoder: MiniLMEncoder) -> None:
    vectors, _ = encoder.encode(
        [
            "A man is playing a guitar.",
            "Someone strums an acoustic guitar.",
            "The stock market fell sharply on Monday.",
            "Share prices dropped at the start of the week.",
        ]
    )
    sim = vectors @ vectors.T
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.5
    assert max(sim[0, 2], sim[0, 3], sim[1, 2], sim[1, 3]) < 0.2


def test_padding_in_a_batch_does_not_change_a_vector(encoder: MiniLMEncoder) -> None:
    """Padded positions are masked out of attention and pooling: a short text embedded next
    to a long one gets the vector it gets alone."""
    short = "Llamas hum."
    alone, _ = encoder.encode([short])
    together, _ = encoder.encode([" ".join(["Alpacas are smaller than llamas."] * 20), short])
    np.testing.assert_allclose(together[1], alone[0], atol=1e-5)


def test_long_text_is_truncated_at_the_models_max_length(encoder: MiniLMEncoder) -> None:
    text = "word " * 2000
    vectors, tokens = encoder.encode([text, text + " and a different ending"])
    assert tokens == 2 * encoder.max_seq_length == 512
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)  # the tails are cut off


def test_order_is_kept_across_length_sorted_batches(encoder: MiniLMEncoder) -> None:
    texts = [f"{'very ' * (i % 13)}item number {i}" for i in range(150)]  # > one batch
    together, _ = encoder.encode(texts)
    for i in (0, 7, 64, 149):
        alone, _ = encoder.encode([texts[i]])
        np.testing.assert_allclose(together[i], alone[0], atol=1e-5)


def test_one_encoder_serves_threads_at_once(encoder: MiniLMEncoder) -> None:
    expected, _ = encoder.encode(QUICKSTART)
    results: list[np.ndarray] = []

    def run() -> None:
        results.append(encoder.encode(QUICKSTART)[0])

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for got in results:
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_given_up_encoding_stops_between_forward_passes(encoder: MiniLMEncoder) -> None:
    texts = ["word " * 300] * 40  # 40 x 256 tokens: several token-bounded batches
    asked: list[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 1  # given up once the first pass has run

    with pytest.raises(Cancelled):
        encoder.encode(texts, cancelled)
    assert len(asked) == 2  # one pass ran, the second was never started
    with pytest.raises(Cancelled):
        encoder.encode(["hello"], lambda: True)  # given up before any work


def test_provider_instances_share_one_model_per_process() -> None:
    """Every pool builds its own provider instance; the weights still load once."""
    import asyncio

    from llamda.api.inference import EmbeddingsRequest
    from llamda.providers.inference.config import SentenceTransformersConfig
    from llamda.providers.inference.sentence_transformers import SentenceTransformersProvider

    config = SentenceTransformersConfig(max_seq_length=64)  # a key no other test loaded
    a, b = (SentenceTransformersProvider(n, "inline::sentence-transformers", config) for n in "ab")
    request = EmbeddingsRequest(model="m", input=QUICKSTART)

    async def both() -> list[list[float]]:
        replies = await asyncio.gather(a.embeddings(request, "m"), b.embeddings(request, "m"))
        return [r.data[1].embedding for r in replies]  # type: ignore[misc]

    first, second = asyncio.run(both())
    assert a.encoder() is b.encoder()
    assert first == second and len(first) == 384
