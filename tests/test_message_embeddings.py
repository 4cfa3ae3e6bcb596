"""Messages and their clauses embedded in one pass, and messages that arrive together batched."""
import asyncio
import threading

import numpy as np
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message

from components.message_embeddings import EmbeddingBatcher, clauses, embed_messages
from components.minilm import MiniLMEncoder, shared_encoder
from components.sentence_encoder import SentenceEncoderFeaturizer, clause_embeddings, sentence_embedding

TWO_CLAUSES = "how long does one infusion take? i worry i will be stuck there all afternoon"


def test_a_message_and_its_clauses_get_the_vectors_they_get_one_at_a_time():
    texts = ["side effects?", TWO_CLAUSES, ""]
    for text, embeddings in zip(texts, embed_messages(texts), strict=True):
        assert np.abs(embeddings.whole - shared_encoder().encode(text)).max() < 1e-5
        assert embeddings.clauses.shape == (len(clauses(text)), 384)
        for clause, vector in zip(clauses(text), embeddings.clauses, strict=True):
            assert np.abs(vector - shared_encoder().encode(clause)).max() < 1e-5
    assert len(clauses(TWO_CLAUSES)) == 2


def recording_batcher(capacity=256):
    passes = []

    def embed(texts, encoder):
        passes.append(list(texts))
        return embed_messages(texts, encoder)
    return EmbeddingBatcher(shared_encoder(), capacity, embed), passes


def test_messages_that_arrive_together_are_embedded_in_one_pass_and_taken_once():
    batcher, passes = recording_batcher()

    async def arrive():
        texts = ("side effects?", TWO_CLAUSES, "side effects?")
        await asyncio.gather(*(batcher.embed_with_others(text) for text in texts))
    asyncio.run(arrive())
    assert passes == [["side effects?", TWO_CLAUSES]]
    taken = batcher.take(TWO_CLAUSES, shared_encoder())
    assert np.abs(taken.whole - shared_encoder().encode(TWO_CLAUSES)).max() < 1e-5
    assert batcher.take(TWO_CLAUSES, shared_encoder()) is None


def test_the_oldest_embeddings_nobody_took_are_dropped():
    batcher, _ = recording_batcher(capacity=2)

    async def arrive():
        for text in ("one two three", "four five six", "seven eight nine"):
            await batcher.embed_with_others(text)
    asyncio.run(arrive())
    assert batcher.take("one two three", shared_encoder()) is None
    assert batcher.take("seven eight nine", shared_encoder()) is not None


def test_a_failed_pass_leaves_the_messages_to_the_featurizer():
    def broken(texts, encoder):
        raise MemoryError
    batcher = EmbeddingBatcher(shared_encoder(), embed=broken)
    asyncio.run(batcher.embed_with_others("side effects?"))
    assert batcher.take("side effects?", shared_encoder()) is None


def test_before_a_model_is_loaded_the_batcher_leaves_messages_to_the_featurizer():
    passes = []
    batcher = EmbeddingBatcher(embed=lambda texts, encoder: passes.append(texts))
    asyncio.run(batcher.embed_with_others("side effects?"))
    assert passes == []
    assert batcher.take("side effects?", shared_encoder()) is None


def test_embeddings_from_another_model_s_encoder_are_not_taken():
    batcher, _ = recording_batcher()
    asyncio.run(batcher.embed_with_others("side effects?"))
    other = MiniLMEncoder()
    assert batcher.take("side effects?", other) is None
    batcher.use(other)
    asyncio.run(batcher.embed_with_others("side effects?"))
    assert batcher.take("side effects?", other) is not None


def test_the_featurizer_takes_a_batched_message_without_encoding_it_again(monkeypatch):
    batcher, passes = recording_batcher()
    monkeypatch.setattr("components.sentence_encoder.shared_batcher", lambda: batcher)
    asyncio.run(batcher.embed_with_others(TWO_CLAUSES))
    featurizer = SentenceEncoderFeaturizer(SentenceEncoderFeaturizer.get_default_config(), "sentence_encoder")
    encoded = []
    real_encode = shared_encoder().encode_with_pretrained
    monkeypatch.setattr(shared_encoder(), "encode_with_pretrained",
                        lambda texts, *rest: encoded.extend(texts) or real_encode(texts, *rest))
    batched, alone = Message(data={TEXT: TWO_CLAUSES}), Message(data={TEXT: "is it addictive"})
    featurizer.process([batched, alone])
    assert passes == [[TWO_CLAUSES]]
    assert encoded == ["is it addictive"]
    assert np.abs(sentence_embedding(batched) - shared_encoder().encode(TWO_CLAUSES)).max() < 1e-5
    assert clause_embeddings(batched).shape == (2, 384)
    assert clause_embeddings(alone).shape == (0, 384)


def test_a_message_embedded_meanwhile_is_taken_once_with_the_vectors_it_gets_alone():
    batcher, passes = recording_batcher()
    batcher.embed_meanwhile(TWO_CLAUSES)
    batcher.embed_meanwhile(TWO_CLAUSES)  # a pass has it already
    taken = batcher.take(TWO_CLAUSES, shared_encoder())
    assert passes == [[TWO_CLAUSES]]
    alone = embed_messages([TWO_CLAUSES])[0]
    assert np.array_equal(taken.whole, alone.whole) and np.array_equal(taken.clauses, alone.clauses)
    assert batcher.take(TWO_CLAUSES, shared_encoder()) is None


def test_the_featurizer_waits_for_a_pass_still_on_the_worker_thread():
    started, release = threading.Event(), threading.Event()

    def slow(texts, encoder):
        started.set()
        release.wait(5)
        return embed_messages(texts, encoder)
    batcher = EmbeddingBatcher(shared_encoder(), embed=slow)
    batcher.embed_meanwhile("side effects?")
    assert started.wait(5)
    threading.Timer(0.2, release.set).start()
    assert batcher.take("side effects?", shared_encoder()) is not None


def test_a_failed_pass_on_the_worker_thread_leaves_the_message_to_the_featurizer():
    def broken(texts, encoder):
        raise MemoryError
    batcher = EmbeddingBatcher(shared_encoder(), embed=broken)
    batcher.embed_meanwhile("side effects?")
    assert batcher.take("side effects?", shared_encoder()) is None


def test_buttons_payloads_and_messages_before_a_model_is_loaded_are_not_embedded_meanwhile():
    batcher, passes = recording_batcher()
    batcher.embed_meanwhile("/book_consultation")
    assert batcher.take("/book_consultation", shared_encoder()) is None  # would wait for a pass
    EmbeddingBatcher(embed=lambda texts, encoder: passes.append(texts)).embed_meanwhile("side effects?")
    assert passes == []
