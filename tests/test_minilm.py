"""The sentence encoder against reference embeddings from transformers' TFBertModel."""
import json
from collections import Counter

import numpy as np
import pytest

from components import bert_onnx
from components.minilm import (
    MAX_CHARS,
    WEIGHTS_SHA256,
    MiniLMEncoder,
    layer_weights,
    model_dir,
    named_weights,
    raw_weights,
    shared_encoder,
    weights_sha256,
)
from tests.conftest import ROOT

REFERENCE = json.loads((ROOT / "tests/fixtures/minilm_reference.json").read_text(encoding="utf-8"))["embeddings"]


def test_installed_weights_are_the_pinned_ones():
    assert weights_sha256(model_dir()) == WEIGHTS_SHA256


@pytest.mark.parametrize("text", sorted(REFERENCE))
def test_embeddings_match_the_reference_implementation(text):
    got = shared_encoder().encode(text)
    assert got.shape == (384,)
    assert np.abs(got - np.array(REFERENCE[text])).max() < 1e-5


def test_paraphrases_are_closer_than_unrelated_questions():
    encode = shared_encoder().encode
    question = encode("how long is one infusion appointment")
    assert question @ encode("how many minutes does a session take") > question @ encode("can i get addicted")


def test_very_long_text_is_cut_before_tokenising():
    encoder = shared_encoder()
    long_text = "ketamine " * 100_000
    assert len(encoder.token_ids(long_text)) <= 128
    assert np.allclose(encoder.encode(long_text), encoder.encode(long_text[:MAX_CHARS]))


def test_a_batch_of_different_lengths_embeds_each_message_as_alone():
    # Messages are padded to the longest in their batch and sorted by length: the padding must
    # change nothing and each embedding must come back in its message's place.
    encoder = shared_encoder()
    texts = ["side effects?", "", "my mom is 70 and nothing has worked for her depression, could she try this",
             "how long does an infusion take", "hi"]
    batched = encoder.encode_many(texts, batch_size=3)
    alone = np.stack([encoder.encode(text) for text in texts])
    assert np.abs(batched - alone).max() < 1e-5
    assert encoder.encode_many([]).shape == (0, 384)


def test_a_layer_s_weights_come_back_under_their_names():
    weights = raw_weights()
    named = named_weights(4, layer_weights(weights, 4))
    assert sorted(named) == sorted(name for name in weights if name.startswith("encoder.layer.4."))
    assert all(np.array_equal(named[name], weights[name]) for name in named)


def test_with_tuned_layers_the_same_pass_gives_the_pretrained_embeddings_too():
    weights = raw_weights()
    # "Tuned" top layers: layer 5's weights in layer 4's place, a different but real encoder.
    tuned = {name.replace("layer.5.", "layer.4."): value for name, value in weights.items()
             if name.startswith("encoder.layer.5.")}
    tuned.update({name: value for name, value in weights.items() if name.startswith("encoder.layer.5.")})
    encoder = MiniLMEncoder(tuned=tuned)
    assert encoder.first_tuned == 4
    texts = ["side effects?", "how long does one infusion take, and is it safe with zoloft", ""]
    embeddings, pretrained = encoder.encode_with_pretrained(texts, batch_size=2)
    assert np.abs(pretrained - shared_encoder().encode_many(texts)).max() < 1e-5
    assert np.abs(embeddings - encoder.encode_many(texts)).max() < 1e-5
    assert np.abs(embeddings - pretrained).max() > 1e-2
    untuned_embeddings, untuned_pretrained = shared_encoder().encode_with_pretrained(texts)
    assert untuned_embeddings is untuned_pretrained


def test_the_tuning_s_tensorflow_layers_compute_what_the_encoder_s_graph_does():
    import tensorflow as tf

    from components.encoder_tuning import _padded, bert_layers, mean_pooled

    weights = raw_weights()
    tuned = {name.replace("layer.3.", "layer.5."): value for name, value in weights.items()
             if name.startswith("encoder.layer.3.")}
    encoder = MiniLMEncoder(tuned=tuned)
    texts = ["side effects?", "how long does one infusion take, and is it safe with zoloft", "hi"]
    states = encoder.hidden_states([encoder.token_ids(text) for text in texts], stop=encoder.first_tuned)
    hidden, mask = _padded(states)
    layers = [[tf.constant(value) for value in layer_weights({**weights, **tuned}, 5)]]
    trained = mean_pooled(bert_layers(hidden, mask, layers, encoder.heads, encoder.eps), mask).numpy()
    assert np.abs(trained - encoder.encode_many(texts)).max() < 1e-5


def test_in_8_bits_the_embeddings_stay_close_to_the_float_ones():
    weights = raw_weights()
    tuned = {name.replace("layer.3.", "layer.5."): value for name, value in weights.items()
             if name.startswith("encoder.layer.3.")}
    exact, in_8_bits = MiniLMEncoder(tuned=tuned), MiniLMEncoder(tuned=tuned, quantized=True)
    graph = bert_onnx.build(*MiniLMEncoder._embedding_weights(weights), [layer_weights(weights, i) for i in range(6)],
                            {"embedding": []}, exact.heads, exact.eps, quantized=True).graph
    # Each layer's four weight matrices in 8 bits; the attention (in float) one operator a layer.
    operators = Counter(node.op_type for node in graph.node)
    assert (operators["MatMulInteger"], operators["MatMul"], operators["MultiHeadAttention"]) == (4 * 6, 0, 6)
    texts = ["side effects?", "how long does one infusion take, and is it safe with zoloft",
             "my husband has ptsd from the army and nothing helps, could he try this", ""]
    for float_ones, quantized_ones in zip(exact.encode_with_pretrained(texts), in_8_bits.encode_with_pretrained(texts),
                                          strict=True):
        similarity = (float_ones * quantized_ones).sum(axis=1)
        assert similarity.min() > 0.97
        assert np.abs(float_ones - quantized_ones).max() > 1e-4
    # Each word piece has its own scale: a message's embedding is the same in any batch.
    assert np.abs(in_8_bits.encode_many(texts) - np.stack([in_8_bits.encode(text) for text in texts])).max() < 1e-6
    question = in_8_bits.encode("how long is one infusion appointment")
    assert (question @ in_8_bits.encode("how many minutes does a session take")
            > question @ in_8_bits.encode("can i get addicted"))
