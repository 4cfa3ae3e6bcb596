"""BERT's forward pass as an ONNX graph, built from the weights, for ONNX Runtime.

The graph takes word-piece ids and a mask, padded to the batch's longest message, and gives
mean-pooled, L2-normalised embeddings (sentence-transformers' pooling), or the word pieces'
states after some layers. Layers may branch: the lower layers run once and each branch's own
top layers on their output, so a tuned encoder's embedding and the pretrained one's come from
one pass. Built with onnx's helpers from the weights at load, so tuned weights need no export
step (and no PyTorch, which exporting a model to ONNX usually needs). No Rasa, no TensorFlow.

`quantized`: the layers' weight matrices as 8-bit integers with one scale per output column, and
each word piece's vector rounded to 8 bits with its own scale before each product with them (the
attention's products of two activations stay in float). With a scale per word piece, a message's
embedding does not depend on the other messages in its batch, as it would with ONNX Runtime's
DynamicQuantizeMatMul, whose one scale for the whole batch made training's embeddings (batched)
differ from the server's (one message) by up to 0.02. On 60 dev messages with their clauses:
cosine 0.996 on average, 0.981 at worst, from the float embeddings.

The attention, the residual layer norms and the GELU with its bias are ONNX Runtime's own
operators (MultiHeadAttention, SkipLayerNormalization, BiasGelu), each one step in place of a
dozen, four or six: with the products in 8 bits those small steps had become a larger share of
the pass (a turn's pass 5.2 -> 4.8 ms, session 21). In float, the embeddings are the same to 2e-7.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ONNX operator set 17 has LayerNormalization.
OPSET = 17
# ONNX Runtime's own operators' domain.
MICROSOFT = "com.microsoft"
LayerWeights = Sequence[np.ndarray]


def in_8_bits(values: np.ndarray, axis: int) -> Tuple[np.ndarray, np.ndarray]:
    """`values` as integers in [-127, 127] (int8) and the scales (float32) that map them back, one
    per slice along `axis` (its largest magnitude becomes 127)."""
    scale = (np.maximum(np.abs(values).max(axis=axis), 1e-12) / 127.0).astype(np.float32)
    integers = np.round(values / np.expand_dims(scale, axis)).astype(np.int8)
    return integers, scale


def model_for(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MICROSOFT, 1)])
    # The IR version ONNX Runtime 1.20 reads.
    model.ir_version = 8
    return model


def session_for(model: onnx.ModelProto):
    """An ONNX Runtime session on one thread, like Rasa's TensorFlow: the second core stays with
    the rest of the server."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


class _Graph:
    def __init__(self) -> None:
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self._count = 0

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attributes) -> str | Tuple[str, ...]:
        names = tuple(f"{op_type.lower()}{self._count}_{i}" for i in range(outputs))
        self._count += 1
        self.nodes.append(helper.make_node(op_type, list(inputs), list(names), **attributes))
        return names[0] if outputs == 1 else names

    def weight(self, name: str, value: np.ndarray, quantized: bool) -> str | Tuple[str, str]:
        """A constant; a matrix in 8 bits with its columns' scales if `quantized`."""
        if not (quantized and value.ndim == 2):
            return self.constant(name, value)
        integers, scale = in_8_bits(value, axis=0)
        return self.constant(name, integers), self.constant(f"{name}.scale", scale / 127.0)

    def dense(self, x: str, weight: str | Tuple[str, str], bias: Optional[str] = None) -> str:
        """x times the weights, plus the bias if given (the fused operators below add their own)."""
        product = self.quantized_product(x, *weight) if isinstance(weight, tuple) else self.op("MatMul", x, weight)
        return product if bias is None else self.op("Add", product, bias)

    def quantized_product(self, x: str, integers: str, scale: str) -> str:
        # Each word piece's vector in 8 bits with its own scale (see above): its largest value
        # becomes 127 (128 + 127 unsigned, since ONNX Runtime's fast products take unsigned 8-bit
        # inputs; QuantizeLinear rounds and adds the 128 in one vectorised step).
        largest = self.op("Max", self.op("ReduceMax", self.op("Abs", x), axes=[-1], keepdims=1), "tiny")
        x_integers = self.op("QuantizeLinear", self.op("Mul", x, self.op("Div", "top_8_bits", largest)), "one",
                             "middle_8_bits")
        product = self.op("Cast", self.op("MatMulInteger", x_integers, integers, "middle_8_bits"), to=TensorProto.FLOAT)
        # `scale` holds the weights' column scales divided by 127.
        return self.op("Mul", self.op("Mul", product, largest), scale)

def build(word_embeddings: np.ndarray, position_embeddings: np.ndarray, embedding_norm: Tuple[np.ndarray, np.ndarray],
          shared: Sequence[LayerWeights], branches: Dict[str, Sequence[LayerWeights]],
          heads: int, eps: float, pooled: bool = True, quantized: bool = False) -> onnx.ModelProto:
    """The graph: inputs `ids` (int64, batch x length) and `mask` (float, 1 for a word piece),
    padded to the batch's longest message; one output per branch, named as the branch: the
    messages' embeddings (batch x width) through the shared layers and then the branch's, or, if
    not `pooled`, their word pieces' states (batch x length x width); the products with the
    layers' weights in 8 bits if `quantized` (see above). Each layer's weights in
    components/minilm.py's `layer_weights` order, matrices as (in, out)."""
    g = _Graph()
    width = word_embeddings.shape[1]
    if quantized:
        g.constant("top_8_bits", np.array(127.0, np.float32))
        g.constant("one", np.array(1.0, np.float32))
        g.constant("tiny", np.array(1e-12, np.float32))
        g.constant("middle_8_bits", np.array(128, np.uint8))
    thirds = g.constant("thirds", np.array([width] * 3, np.int64))
    axis0, axis1, axis2 = (g.constant(f"axis{i}", np.array([i], np.int64)) for i in range(3))
    second = g.constant("second", np.array(1, np.int64))
    zero = g.constant("zero", np.array([0], np.int64))
    words = g.constant("words", word_embeddings)
    positions = g.constant("positions", position_embeddings)
    norm = (g.constant("embedding_norm_gain", embedding_norm[0]), g.constant("embedding_norm_bias", embedding_norm[1]))
    layer_constants = {
        (branch, i): tuple(g.weight(f"{branch}{i}.{j}", w, quantized) for j, w in enumerate(weights))
        for branch, layers in (("shared", shared), *branches.items()) for i, weights in enumerate(layers)}

    def layer(x: str, constants: Tuple[str, ...]) -> str:
        qkv_w, qkv_b, out_w, out_b, norm1_g, norm1_b, up_w, up_b, down_w, down_b, norm2_g, norm2_b = constants
        q, k, v = g.op("Split", g.dense(x, qkv_w, qkv_b), thirds, axis=-1, outputs=3)
        # Padding takes no attention (`key_mask`).
        context = g.op("MultiHeadAttention", q, k, v, "", "key_mask", domain=MICROSOFT, num_heads=heads)
        x = g.op("SkipLayerNormalization", g.dense(context, out_w), x, norm1_g, norm1_b, out_b, domain=MICROSOFT,
                 epsilon=eps)
        # BERT's exact GELU, x/2 (1 + erf(x / sqrt 2)), after the bias.
        up = g.op("BiasGelu", g.dense(x, up_w), up_b, domain=MICROSOFT)
        return g.op("SkipLayerNormalization", g.dense(up, down_w), x, norm2_g, norm2_b, down_b, domain=MICROSOFT,
                    epsilon=eps)

    def through(x: str, branch: str, count: int) -> str:
        for i in range(count):
            x = layer(x, layer_constants[branch, i])
        return x

    # The word pieces' embeddings plus their positions' (segment A's folded in), normalised.
    length = g.op("Unsqueeze", g.op("Gather", g.op("Shape", "ids"), second), axis0)
    hidden = g.op("Add", g.op("Gather", words, "ids"), g.op("Slice", positions, zero, length, axis0))
    hidden = g.op("LayerNormalization", hidden, *norm, axis=-1, epsilon=eps)
    g.nodes.append(helper.make_node("Cast", ["mask"], ["key_mask"], to=TensorProto.INT32))
    lower = through(hidden, "shared", len(shared))
    graph_outputs = []
    for branch, layers in branches.items():
        states = through(lower, branch, len(layers))
        if pooled:
            masked = g.op("Mul", states, g.op("Unsqueeze", "mask", axis2))
            mean = g.op("Div", g.op("ReduceSum", masked, axis1, keepdims=0),
                        g.op("ReduceSum", "mask", axis1, keepdims=1))
            g.nodes.append(helper.make_node("LpNormalization", [mean], [branch], axis=-1, p=2))
            graph_outputs.append(helper.make_tensor_value_info(branch, TensorProto.FLOAT, ["batch", width]))
        else:
            g.nodes.append(helper.make_node("Identity", [states], [branch]))
            graph_outputs.append(helper.make_tensor_value_info(branch, TensorProto.FLOAT, ["batch", "length", width]))
    graph = helper.make_graph(g.nodes, "bert", [
        helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "length"]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "length"]),
    ], graph_outputs, g.initializers)
    return model_for(graph)
