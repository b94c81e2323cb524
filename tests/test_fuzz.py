"""Differential fuzzing: random valid graphs, optimized, must pass the checker, load in ORT, match.

The generator (`random_model`) draws from: elementwise ops, Conv (+BN, per-channel Mul/Add, zero
Pad), MatMul/Gemm (+bias), BatchNormalization, Reshape/Transpose/Concat/Slice/Squeeze/Unsqueeze
(chains and no-op forms), Shape arithmetic, constant subgraphs, dead branches and If with a constant
condition. CI runs a bounded number of examples; `python scripts/fuzz.py --examples N` runs more.
Every bug found becomes a regression test below (`test_regression_*`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from helpers import assert_same_outputs, make_model, op_counts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import onnxslim

N = helper.make_node
FLOAT = TensorProto.FLOAT
BATCH = 2  # the value fed for the symbolic batch dim


@dataclass
class T:
    """A float tensor of the graph being built; dim 0 of `shape` is the batch when `batched`."""

    name: str
    shape: tuple[int, ...]
    batched: bool = False


class Builder:
    """Builds one random model from hypothesis draws, tracking every tensor's shape."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.pool: list[T] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.count = 0
        self.rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    # ------------------------------------------------------------ helpers

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def const(self, array, stem: str = "c") -> str:
        name = self.fresh(stem)
        self.inits.append(onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def weights(self, *shape: int, scale: float = 0.5) -> str:
        return self.const((self.rng.standard_normal(shape) * scale).astype(np.float32), "w")

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        outs = [self.fresh(op.lower()) for _ in range(n_out)]
        self.nodes.append(N(op, inputs, outs, **attrs))
        return outs

    def pick(self, rank: int | None = None) -> T | None:
        choices = [t for t in self.pool if rank is None or len(t.shape) == rank]
        return self.draw(st.sampled_from(choices)) if choices else None

    def add(self, name: str, shape, batched: bool) -> T:
        tensor = T(name, tuple(int(d) for d in shape), batched)
        self.pool.append(tensor)
        return tensor

    # ------------------------------------------------------------ ops

    def unary(self) -> None:
        x = self.pick()
        op = self.draw(
            st.sampled_from(
                ["Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Identity", "Dropout", "Softsign"]
            )
        )
        self.add(self.node(op, [x.name])[0], x.shape, x.batched)

    def binary(self) -> None:
        x = self.pick()
        op = self.draw(st.sampled_from(["Add", "Sub", "Mul", "Div"]))
        kind = self.draw(st.sampled_from(["scalar", "channel", "full", "neutral", "tensor"]))
        if kind == "tensor":
            same = [t for t in self.pool if t.shape == x.shape and t.batched == x.batched]
            other = self.draw(st.sampled_from(same)).name
        elif kind == "neutral":  # x+0, x*1, ...: no-ops when the shape is kept
            value = 1.0 if op in ("Mul", "Div") else 0.0
            shape = self.draw(st.sampled_from([(), (1,), x.shape[-1:]]))
            other = self.const(np.full(shape, value, np.float32))
        else:
            shape = {
                "scalar": (),
                "channel": (x.shape[1],) + (1,) * (len(x.shape) - 2) if len(x.shape) > 1 else (),
                "full": x.shape[1:],
            }[kind]
            values = self.rng.uniform(0.5, 1.5, shape).astype(np.float32)
            other = self.const(
                values
                if op == "Div"
                else (values * self.rng.choice([-1, 1], shape)).astype(np.float32)
            )
        swap = op in ("Add", "Mul") and self.draw(st.booleans())
        self.add(self.node(op, [other, x.name] if swap else [x.name, other])[0], x.shape, x.batched)

    def conv(self) -> None:
        x = self.pick(4)
        if x is None:
            return self.unary()
        n, c, h, w = x.shape
        depthwise = self.draw(st.booleans())
        out_c = c if depthwise else self.draw(st.integers(1, 6))
        k = self.draw(st.sampled_from([1, 3]))
        stride = self.draw(st.sampled_from([1, 2]))
        dilation = self.draw(st.sampled_from([1, 2])) if k == 3 else 1
        pad = self.draw(st.integers(0, 2))
        inp = x.name
        # a zero Pad the Conv can absorb (or a non-zero one it must not)
        if self.draw(st.booleans()):
            value = self.draw(st.sampled_from([0.0, 0.0, 1.0]))
            pads = [0, 0, pad, pad, 0, 0, pad, pad]
            inp = self.node(
                "Pad",
                [inp, self.const(np.array(pads, np.int64)), self.const(np.float32(value))],
                mode="constant",
            )[0]
            h, w, pad = h + 2 * pad, w + 2 * pad, 0
        eff = dilation * (k - 1) + 1
        if h + 2 * pad < eff or w + 2 * pad < eff:
            return self.unary()
        ins = [inp, self.weights(out_c, 1 if depthwise else c, k, k)]
        if self.draw(st.booleans()):
            ins.append(self.weights(out_c))
        y = self.node(
            "Conv",
            ins,
            group=c if depthwise else 1,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            dilations=[dilation, dilation],
        )[0]
        oh, ow = (h + 2 * pad - eff) // stride + 1, (w + 2 * pad - eff) // stride + 1
        follow = self.draw(st.sampled_from(["none", "bn", "mul", "add", "mul_add"]))
        if follow == "bn":
            y = self.batchnorm(y, out_c)
        if follow in ("mul", "mul_add"):
            y = self.node(
                "Mul", [y, self.const(self.rng.uniform(0.5, 2, (out_c, 1, 1)).astype(np.float32))]
            )[0]
        if follow in ("add", "mul_add"):
            y = self.node("Add", [y, self.weights(out_c, 1, 1)])[0]
        self.add(y, (n, out_c, oh, ow), x.batched)

    def batchnorm(self, x: str, channels: int) -> str:
        eps = self.draw(st.sampled_from([1e-5, 1e-3]))
        return self.node(
            "BatchNormalization",
            [
                x,
                self.const(self.rng.uniform(0.5, 1.5, channels).astype(np.float32)),
                self.weights(channels),
                self.weights(channels),
                self.const(self.rng.uniform(0.5, 2, channels).astype(np.float32)),
            ],
            epsilon=eps,
        )[0]

    def matmul(self) -> None:
        x = self.pick()
        if len(x.shape) not in (2, 3):
            return self.flatten()
        k = x.shape[-1]
        m = self.draw(st.integers(1, 8))
        if len(x.shape) == 2 and self.draw(st.booleans()):
            trans = self.draw(st.booleans())
            w = self.weights(m, k) if trans else self.weights(k, m)
            ins = [x.name, w] + ([self.weights(m)] if self.draw(st.booleans()) else [])
            y = self.node(
                "Gemm", ins, transB=int(trans), alpha=self.draw(st.sampled_from([1.0, 0.5]))
            )[0]
        else:
            y = self.node("MatMul", [x.name, self.weights(k, m)])[0]
            if self.draw(st.booleans()):
                y = self.node("Add", [y, self.weights(m)])[0]
        if len(x.shape) == 2 and self.draw(st.integers(0, 3)) == 0:  # BN after Gemm/MatMul
            y = self.batchnorm(y, m)
        self.add(y, x.shape[:-1] + (m,), x.batched)

    def flatten(self) -> None:
        x = self.pick()
        if len(x.shape) < 2:
            return self.unary()
        rest = int(np.prod(x.shape[1:]))
        how = self.draw(st.sampled_from(["constant", "shape_arith", "flatten"]))
        if how == "flatten":
            y = self.node("Flatten", [x.name], axis=1)[0]
        elif how == "constant":
            y = self.node(
                "Reshape", [x.name, self.const(np.array([-1 if x.batched else x.shape[0], rest]))]
            )[0]
        else:
            # Shape -> Gather(0) -> Unsqueeze -> Concat([n, rest]) -> Reshape, as exporters write it
            shape = self.node("Shape", [x.name])[0]
            n = self.node("Gather", [shape, self.const(np.array(0))], axis=0)[0]
            n1 = self.node("Unsqueeze", [n, self.const(np.array([0]))])[0]
            target = self.node("Concat", [n1, self.const(np.array([rest]))], axis=0)[0]
            y = self.node("Reshape", [x.name, target])[0]
        self.add(y, (x.shape[0], rest), x.batched)

    def transpose(self) -> None:
        x = self.pick()
        rank = len(x.shape)
        fixed = self.draw(st.booleans()) or not x.batched
        tail = list(self.draw(st.permutations(range(1, rank)))) if rank > 1 else []
        perm = [0] + tail if x.batched or fixed else list(self.draw(st.permutations(range(rank))))
        y = self.node("Transpose", [x.name], perm=perm)[0]
        shape = tuple(x.shape[p] for p in perm)
        # a second Transpose: fused, or cancelled when it is the inverse
        if self.draw(st.booleans()):
            inverse = list(np.argsort(perm)) if self.draw(st.booleans()) else perm
            if x.batched and inverse[0] != 0:
                inverse = list(np.argsort(perm))
            y = self.node("Transpose", [y], perm=[int(p) for p in inverse])[0]
            shape = tuple(shape[p] for p in inverse)
        self.add(y, shape, x.batched and perm[0] == 0)

    def concat(self) -> None:
        x = self.pick()
        axis = (
            self.draw(st.integers(1 if x.batched else 0, len(x.shape) - 1))
            if len(x.shape) > 1
            else 0
        )
        if x.batched and axis == 0:
            return self.unary()
        same = [
            t
            for t in self.pool
            if len(t.shape) == len(x.shape)
            and t.batched == x.batched
            and all(a == b for i, (a, b) in enumerate(zip(t.shape, x.shape)) if i != axis)
        ]
        parts = [x] + [
            self.draw(st.sampled_from(same)) for _ in range(self.draw(st.integers(0, 2)))
        ]
        y = self.node("Concat", [p.name for p in parts], axis=axis)[0]
        total = sum(p.shape[axis] for p in parts)
        if self.draw(st.booleans()):  # nested Concat on the same axis
            y = self.node("Concat", [y, x.name], axis=axis)[0]
            total += x.shape[axis]
        self.add(y, x.shape[:axis] + (total,) + x.shape[axis + 1 :], x.batched)

    def slice(self) -> None:
        x = self.pick()
        shape = list(x.shape)
        name = x.name
        for _ in range(self.draw(st.integers(1, 2))):  # one Slice, or Slice + Slice
            axes = [a for a in range(len(shape)) if not (x.batched and a == 0)]
            if not axes:
                return self.unary()
            axis = self.draw(st.sampled_from(axes))
            dim = shape[axis]
            start = self.draw(st.integers(0, dim - 1))
            end = self.draw(
                st.sampled_from(
                    [
                        dim,
                        2**62,
                        -1 if dim > 1 and start < dim - 1 else dim,
                        self.draw(st.integers(start + 1, dim)),
                    ]
                )
            )
            step = self.draw(st.sampled_from([1, 1, 2]))
            name = self.node(
                "Slice",
                [
                    name,
                    self.const(np.array([start])),
                    self.const(np.array([end])),
                    self.const(np.array([axis])),
                    self.const(np.array([step])),
                ],
            )[0]
            stop = dim if end > dim else (dim + end if end < 0 else end)
            shape[axis] = len(range(start, stop, step))
            if shape[axis] == 0:
                return self.unary()
        self.add(name, shape, x.batched)

    def squeeze_chain(self) -> None:
        x = self.pick()
        rank = len(x.shape)
        a1 = self.draw(st.integers(1 if x.batched else 0, rank))
        y = self.node("Unsqueeze", [x.name, self.const(np.array([a1]))])[0]
        shape = x.shape[:a1] + (1,) + x.shape[a1:]
        if self.draw(st.booleans()):
            a2 = self.draw(st.integers(1 if x.batched else 0, rank + 1))
            y = self.node("Unsqueeze", [y, self.const(np.array([a2]))])[0]
            shape = shape[:a2] + (1,) + shape[a2:]
            if self.draw(st.booleans()):
                y = self.node("Squeeze", [y, self.const(np.array([a2]))])[0]
                shape = shape[:a2] + shape[a2 + 1 :]
        self.add(y, shape, x.batched)

    def constant_subgraph(self) -> None:
        """A chain computed only from constants (folded), then combined with a live tensor."""
        x = self.pick()
        c = self.const(self.rng.uniform(0.5, 1.5, x.shape[1:]).astype(np.float32))
        for op in self.draw(
            st.lists(st.sampled_from(["Neg", "Sqrt", "Exp", "Tanh", "Transpose2"]), max_size=3)
        ):
            if op == "Transpose2":
                # identity perm
                c = self.node("Transpose", [c], perm=list(range(len(x.shape) - 1)))[0]
            elif op == "Sqrt":
                c = self.node("Sqrt", [self.node("Abs", [c])[0]])[0]
            else:
                c = self.node(op, [c])[0]
        if self.draw(st.booleans()):
            c = self.node(
                "Constant",
                [],
                value=onnx.numpy_helper.from_array(
                    self.rng.uniform(0.5, 1.5, x.shape[1:]).astype(np.float32), self.fresh("v")
                ),
            )[0]
        self.add(
            self.node(self.draw(st.sampled_from(["Add", "Mul"])), [x.name, c])[0],
            x.shape,
            x.batched,
        )

    def dead_branch(self) -> None:
        x = self.pick()
        y = self.node("Sigmoid", [x.name])[0]
        self.node("Mul", [y, self.weights(*x.shape[1:])])  # never used: pruned

    def if_constant(self) -> None:
        x = self.pick()
        cond = self.draw(st.booleans())
        then_out, else_out = self.fresh("then"), self.fresh("else")
        shape = [None if x.batched and i == 0 else d for i, d in enumerate(x.shape)]
        then = helper.make_graph(
            [N("Relu", [x.name], [then_out])],
            self.fresh("then_g"),
            [],
            [helper.make_tensor_value_info(then_out, FLOAT, shape)],
        )
        other = helper.make_graph(
            [N("Tanh", [x.name], [else_out])],
            self.fresh("else_g"),
            [],
            [helper.make_tensor_value_info(else_out, FLOAT, shape)],
        )
        c = self.const(np.array(cond))
        if self.draw(st.booleans()):  # the condition computed from constants
            c = self.node("Not", [self.const(np.array(not cond))])[0]
        self.add(self.node("If", [c], then_branch=then, else_branch=other)[0], x.shape, x.batched)

    def no_op(self) -> None:
        """Forms that compute their input unchanged (and a few look-alikes that do not)."""
        x = self.pick()
        kind = self.draw(
            st.sampled_from(["cast", "expand", "reshape", "pad", "split", "concat1", "reshape2"])
        )
        declared = np.array(
            [-1 if x.batched and i == 0 else d for i, d in enumerate(x.shape)], np.int64
        )
        if kind == "cast":
            y = self.node("Cast", [x.name], to=FLOAT)[0]
        elif kind == "expand":
            y = self.node("Expand", [x.name, self.const(np.ones(len(x.shape), np.int64))])[0]
        elif kind == "reshape":
            y = self.node("Reshape", [x.name, self.const(np.where(declared < 0, 0, declared))])[0]
        elif kind == "pad":
            y = self.node(
                "Pad", [x.name, self.const(np.zeros(2 * len(x.shape), np.int64))], mode="constant"
            )[0]
        elif kind == "split":
            y = self.node("Split", [x.name], axis=len(x.shape) - 1)[0]
        elif kind == "concat1":
            y = self.node("Concat", [x.name], axis=len(x.shape) - 1)[0]
        else:  # Reshape + Reshape back
            if len(x.shape) < 2:
                return self.unary()
            flat = self.node(
                "Reshape", [x.name, self.const(np.array([max(int(declared[0]), 0), -1]))]
            )[0]
            y = self.node("Reshape", [flat, self.const(np.where(declared < 0, 0, declared))])[0]
        self.add(y, x.shape, x.batched)

    def conv_transpose(self) -> None:
        x = self.pick(4)
        if x is None:
            return self.unary()
        n, c, h, w = x.shape
        out_c = self.draw(st.integers(1, 4))
        k, stride = self.draw(st.sampled_from([1, 2, 3])), self.draw(st.sampled_from([1, 2]))
        group = c if self.draw(st.booleans()) and out_c == 1 else 1
        ins = [x.name, self.weights(c, out_c if group == 1 else 1, k, k)]
        if self.draw(st.booleans()):
            ins.append(self.weights(out_c if group == 1 else c))
        channels = out_c if group == 1 else c
        y = self.node(
            "ConvTranspose", ins, kernel_shape=[k, k], strides=[stride, stride], group=group
        )[0]
        if self.draw(st.booleans()):
            y = self.batchnorm(y, channels)
        self.add(y, (n, channels, (h - 1) * stride + k, (w - 1) * stride + k), x.batched)

    OPS = (
        "unary",
        "binary",
        "conv",
        "matmul",
        "flatten",
        "transpose",
        "concat",
        "slice",
        "squeeze_chain",
        "constant_subgraph",
        "dead_branch",
        "if_constant",
        "no_op",
        "conv_transpose",
    )

    def build(self) -> onnx.ModelProto:
        layout = self.draw(st.sampled_from(["image", "features", "both"]))
        batched = self.draw(st.booleans())
        dims = []
        if layout in ("image", "both"):
            dims.append(
                (
                    BATCH,
                    self.draw(st.integers(1, 4)),
                    self.draw(st.integers(3, 9)),
                    self.draw(st.integers(3, 9)),
                )
            )
        if layout in ("features", "both"):
            dims.append((BATCH, self.draw(st.integers(1, 12))))
        for i, shape in enumerate(dims):
            name = f"input{i}"
            declared = ["N" if batched else BATCH, *shape[1:]]
            self.inputs.append(helper.make_tensor_value_info(name, FLOAT, declared))
            self.add(name, shape, batched)
        for _ in range(self.draw(st.integers(1, 14))):
            getattr(self, self.draw(st.sampled_from(self.OPS)))()
        produced = [t for t in self.pool if not t.name.startswith("input")] or self.pool[-1:]
        outs = [produced[-1]] + (
            [self.draw(st.sampled_from(produced))] if self.draw(st.booleans()) else []
        )
        outputs, seen = [], set()
        for t in outs:
            if t.name in seen:
                continue
            seen.add(t.name)
            name = t.name
            if name.startswith("input"):  # a graph input cannot be an output as is
                name = self.node("Identity", [name])[0]
            declared = ["N" if t.batched else d if i == 0 else d for i, d in enumerate(t.shape)]
            outputs.append(helper.make_tensor_value_info(name, FLOAT, declared))
        return make_model(
            self.nodes, self.inputs, outputs, self.inits, opset=self.draw(st.sampled_from([13, 17]))
        )


@st.composite
def random_model(draw) -> onnx.ModelProto:
    return Builder(draw).build()


def feeds_for(model: onnx.ModelProto, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    result = {}
    for value in model.graph.input:
        dims = [BATCH if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim]
        result[value.name] = rng.standard_normal(dims).astype(np.float32)
    return result


def check_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The property: the optimized model passes the checker, loads in ORT, matches the original."""
    onnx.checker.check_model(model, full_check=True)  # the generator's own output must be valid
    try:
        optimized = ir.to_proto(onnxslim.optimize(model, check=False))
        onnx.checker.check_model(optimized, full_check=True)
        for seed in (0, 1):
            assert_same_outputs(
                model, optimized, feeds=feeds_for(model, seed), rtol=1e-3, atol=1e-4
            )
    except Exception:
        if os.environ.get("ONNXSLIM_FUZZ_SAVE"):  # keep the failing model for a regression test
            onnx.save(model, os.path.join(os.environ["ONNXSLIM_FUZZ_SAVE"], "failing.onnx"))
        raise
    return optimized


EXAMPLES = int(os.environ.get("ONNXSLIM_FUZZ_EXAMPLES", "60"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("ONNXSLIM_FUZZ_RANDOM"),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(random_model())
def test_optimized_random_models_match(model):
    check_model(model)


def test_the_generator_covers_the_op_families():
    """The fuzzer is only as good as its graphs: over a fixed sample, every family shows up."""
    from hypothesis import find

    seen: set[str] = set()

    def record(model):
        seen.update(op_counts(model))
        return {
            "Conv",
            "BatchNormalization",
            "MatMul",
            "Gemm",
            "Reshape",
            "Transpose",
            "Concat",
            "Slice",
            "Shape",
            "If",
            "Unsqueeze",
            "Pad",
        } <= seen

    find(
        random_model(),
        record,
        settings=settings(
            max_examples=400,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )


# ---------------------------------------------------------------- regressions found by the fuzzer


def test_regression_two_outputs_that_become_the_same_value():
    """Found by the fuzzer: a constant-condition If inlined to Tanh(x) next to another Tanh(x)
    output. CSE keeps both names with an Identity; Identity elimination then merged the two
    graph outputs."""
    then = helper.make_graph(
        [N("Relu", ["x"], ["t"])], "then", [], [helper.make_tensor_value_info("t", FLOAT, [2, 1])]
    )
    other = helper.make_graph(
        [N("Tanh", ["x"], ["e"])], "else", [], [helper.make_tensor_value_info("e", FLOAT, [2, 1])]
    )
    model = make_model(
        [
            N("If", ["c"], ["if_out"], then_branch=then, else_branch=other),
            N("Relu", ["x"], ["dead"]),
            N("Tanh", ["x"], ["tanh_out"]),
        ],
        [helper.make_tensor_value_info("x", FLOAT, [2, 1])],
        [
            helper.make_tensor_value_info("tanh_out", FLOAT, [2, 1]),
            helper.make_tensor_value_info("if_out", FLOAT, [2, 1]),
        ],
        [onnx.numpy_helper.from_array(np.array(False), "c")],
        opset=13,
    )
    optimized = check_model(model)
    assert [o.name for o in optimized.graph.output] == ["tanh_out", "if_out"]
    assert op_counts(optimized) == {"Tanh": 1, "Identity": 1}
