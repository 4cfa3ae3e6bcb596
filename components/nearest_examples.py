"""The most similar training examples to a message, exactly, with the scan done in 8 bits.

The safety net and the ensemble each compare every message (and its clauses) with about 5,000
training examples' embeddings, 7.5 MB of float32 that the encoder's pass has pushed out of the
processor's caches by then: reading them back took about 1 ms a turn for each (session 21, dev
messages in the Rasa process). Here the examples are also kept in 8 bits (a quarter of the
memory) and ONNX Runtime scans them; the 8-bit similarities are off from the float ones by at
most a bound worked out for each example, so the examples that can still be among the nearest
are known, and only those are compared again in float. The nearest examples and their
similarities are the float scan's, exactly.

No Rasa here.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from components.bert_onnx import in_8_bits, model_for, session_for

# Unsigned 8-bit queries, centred here: ONNX Runtime's fast 8-bit products take unsigned inputs.
MIDDLE = 128
# How far float32 similarities of unit vectors can be from the real ones, with room to spare.
FLOAT_SLACK = 1e-4


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


class ExampleIndex:
    """Examples in groups (one after another in `groups`' order); for each query, the similarities of
    its `count` most similar examples in each group, highest first."""

    def __init__(self, groups: Sequence[np.ndarray]) -> None:
        self.examples = np.ascontiguousarray(np.concatenate([unit(np.asarray(g, np.float32)) for g in groups]))
        ends = np.cumsum([len(group) for group in groups])
        self.bounds = list(zip([0, *ends[:-1].tolist()], ends.tolist(), strict=True))
        integers, self._scale = in_8_bits(self.examples, axis=1)
        # The examples' share of what rounding can move a similarity by (see `estimates`).
        self._half_sums = np.abs(integers.astype(np.int32)).sum(axis=1) / 2.0
        self._session = _product_session(integers) if len(self.examples) else None

    def estimates(self, queries: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(queries x examples) 8-bit similarities of unit queries, and how far each may be off."""
        query_integers, query_scale = in_8_bits(queries, axis=1)
        query_integers = query_integers.astype(np.int32)
        products = self._session.run(None, {"queries": (query_integers + MIDDLE).astype(np.uint8)})[0]
        scales = query_scale[:, np.newaxis] * self._scale[np.newaxis, :]
        # |q.e - estimate| <= sq * se * (|qi|_1 / 2 + |ei|_1 / 2 + width / 4) for q = sq qi + dq and
        # e = se ei + de with every |dq| <= sq / 2 and |de| <= se / 2; plus float32's own rounding.
        errors = scales * (np.abs(query_integers).sum(axis=1, keepdims=True) / 2.0 + self._half_sums[np.newaxis, :]
                           + queries.shape[1] / 4.0) + FLOAT_SLACK
        return products * scales, errors

    def most_similar(self, queries: np.ndarray, count: int) -> List[List[np.ndarray]]:
        """[query][group] -> up to `count` float similarities, highest first."""
        queries = unit(np.asarray(queries, np.float32).reshape(-1, self.examples.shape[1]))
        if self._session is None or not len(queries):
            return [[np.empty(0, np.float32) for _ in self.bounds] for _ in queries]
        estimates, errors = self.estimates(queries)
        found = []
        for row, query in enumerate(queries):
            per_group = []
            for start, end in self.bounds:
                take = min(count, end - start)
                if take == 0:
                    per_group.append(np.empty(0, np.float32))
                    continue
                low = estimates[row, start:end] - errors[row, start:end]
                # `take` examples are at least this similar, so no example whose similarity can't
                # reach it is among the nearest.
                floor = np.partition(low, end - start - take)[end - start - take]
                candidates = start + np.flatnonzero(estimates[row, start:end] + errors[row, start:end] >= floor)
                similarities = self.examples[candidates] @ query
                per_group.append(-np.sort(-similarities)[:take])
            found.append(per_group)
        return found


def _product_session(integers: np.ndarray):
    """ONNX Runtime graph: unsigned 8-bit queries (rows, width) times the examples' integers."""
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["queries", "examples", "middle"], ["products"])],
        "nearest_examples",
        [helper.make_tensor_value_info("queries", TensorProto.UINT8, ["rows", integers.shape[1]])],
        [helper.make_tensor_value_info("products", TensorProto.INT32, ["rows", integers.shape[0]])],
        [numpy_helper.from_array(np.ascontiguousarray(integers.T), "examples"),
         numpy_helper.from_array(np.array(MIDDLE, np.uint8), "middle")])
    return session_for(model_for(graph))
