"""Build the small demo CNN (`models/demo.onnx`) that exercises what an optimizer removes.

Usage: python models/build_demo.py [out_path]   (default: models/demo.onnx)

Graph (input `input` float32 [batch,3,32,32] -> output `logits` float32 [batch,10]):

    Pad(zeros, 1px) -> Conv1(+bias) -> BatchNorm -> Relu        # Pad fusable into Conv pads
    Conv2(no bias, weight from a Constant node) -> BatchNorm -> Relu
    Identity -> Dropout(inference)                               # no-ops
    Conv3(+bias, stride 2) -> Mul(per-channel) -> Add(per-channel) -> Relu   # fusable into Conv3
    Cast(float->float) -> Transpose(0,2,3,1) -> Transpose(0,3,1,2)          # no-ops
    GlobalAveragePool -> Shape -> Gather(1) -> Unsqueeze -> Concat([-1], .) -> Reshape
                                                                # folds to Reshape [-1,32]
    MatMul(W[32,10]) -> Add(bias[10])                           # classifier head (Gemm)

Initializers also include `unused.weight` (64 KB, consumed by nothing) and `bn2.weight`, a duplicate
(same bytes, same shape) of `bn1.weight`; both BN scales are used.
Everything is deterministic (numpy seed 0), opset 17, IR version 8.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
DEFAULT_OUT = Path(__file__).resolve().parent / "demo.onnx"


def _conv_weight(rng: np.random.Generator, cout: int, cin: int, k: int) -> np.ndarray:
    """He-initialised conv weight [cout, cin, k, k]."""
    std = np.sqrt(2.0 / (cin * k * k))
    return (rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32)


def _bn_params(rng: np.random.Generator, c: int, prefix: str, scale: np.ndarray | None = None):
    """BatchNorm initializers (scale, bias, mean, var) with positive variance."""
    scale = scale if scale is not None else (1.0 + 0.1 * rng.standard_normal(c)).astype(np.float32)
    return [
        numpy_helper.from_array(scale, f"{prefix}.weight"),
        numpy_helper.from_array(
            (0.1 * rng.standard_normal(c)).astype(np.float32), f"{prefix}.bias"
        ),
        numpy_helper.from_array(
            (0.1 * rng.standard_normal(c)).astype(np.float32), f"{prefix}.running_mean"
        ),
        numpy_helper.from_array(
            rng.uniform(0.5, 1.5, c).astype(np.float32), f"{prefix}.running_var"
        ),
    ]


def build_model(seed: int = 0) -> onnx.ModelProto:
    """Return the demo ModelProto (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    i64 = lambda a: np.asarray(a, dtype=np.int64)  # noqa: E731

    bn1 = _bn_params(rng, 16, "bn1")
    bn2 = _bn_params(rng, 16, "bn2", scale=numpy_helper.to_array(bn1[0]).copy())  # duplicate bytes
    inits = [
        numpy_helper.from_array(i64([0, 0, 1, 1, 0, 0, 1, 1]), "pad.pads"),
        numpy_helper.from_array(f32(0.0), "pad.value"),
        numpy_helper.from_array(_conv_weight(rng, 16, 3, 3), "conv1.weight"),
        numpy_helper.from_array(f32(0.1 * rng.standard_normal(16)), "conv1.bias"),
        *bn1,
        *bn2,
        numpy_helper.from_array(_conv_weight(rng, 32, 16, 3), "conv3.weight"),
        numpy_helper.from_array(f32(0.1 * rng.standard_normal(32)), "conv3.bias"),
        numpy_helper.from_array(
            f32(1.0 + 0.1 * rng.standard_normal((1, 32, 1, 1))), "affine.scale"
        ),
        numpy_helper.from_array(f32(0.1 * rng.standard_normal((1, 32, 1, 1))), "affine.shift"),
        numpy_helper.from_array(i64(1), "flatten.index"),
        numpy_helper.from_array(i64([0]), "flatten.axes"),
        numpy_helper.from_array(i64([-1]), "flatten.lead"),
        numpy_helper.from_array(f32(rng.standard_normal((32, 10)) / np.sqrt(32)), "fc.weight"),
        numpy_helper.from_array(f32(0.1 * rng.standard_normal(10)), "fc.bias"),
        # 64 KB, dead
        numpy_helper.from_array(f32(rng.standard_normal((128, 128))), "unused.weight"),
    ]
    conv2_w = numpy_helper.from_array(_conv_weight(rng, 16, 16, 3), "conv2.weight")

    N = helper.make_node
    nodes = [
        N("Pad", ["input", "pad.pads", "pad.value"], ["pad_out"], name="pad", mode="constant"),
        N(
            "Conv",
            ["pad_out", "conv1.weight", "conv1.bias"],
            ["conv1_out"],
            name="conv1",
            kernel_shape=[3, 3],
            pads=[0, 0, 0, 0],
        ),
        N(
            "BatchNormalization",
            ["conv1_out", *(t.name for t in bn1)],
            ["bn1_out"],
            name="bn1",
            epsilon=1e-5,
        ),
        N("Relu", ["bn1_out"], ["relu1_out"], name="relu1"),
        N("Constant", [], ["conv2_w"], name="conv2_weight_const", value=conv2_w),
        N(
            "Conv",
            ["relu1_out", "conv2_w"],
            ["conv2_out"],
            name="conv2",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        N(
            "BatchNormalization",
            ["conv2_out", *(t.name for t in bn2)],
            ["bn2_out"],
            name="bn2",
            epsilon=1e-5,
        ),
        N("Relu", ["bn2_out"], ["relu2_out"], name="relu2"),
        N("Identity", ["relu2_out"], ["identity_out"], name="identity"),
        N("Dropout", ["identity_out"], ["dropout_out"], name="dropout"),
        N(
            "Conv",
            ["dropout_out", "conv3.weight", "conv3.bias"],
            ["conv3_out"],
            name="conv3",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[2, 2],
        ),
        N("Mul", ["conv3_out", "affine.scale"], ["mul_out"], name="affine_mul"),
        N("Add", ["mul_out", "affine.shift"], ["add_out"], name="affine_add"),
        N("Relu", ["add_out"], ["relu3_out"], name="relu3"),
        N("Cast", ["relu3_out"], ["cast_out"], name="cast", to=TensorProto.FLOAT),
        N("Transpose", ["cast_out"], ["nhwc"], name="to_nhwc", perm=[0, 2, 3, 1]),
        N("Transpose", ["nhwc"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        N("GlobalAveragePool", ["nchw"], ["pool_out"], name="gap"),
        N("Shape", ["pool_out"], ["pool_shape"], name="flatten_shape"),
        N("Gather", ["pool_shape", "flatten.index"], ["channels"], name="flatten_gather", axis=0),
        N("Unsqueeze", ["channels", "flatten.axes"], ["channels_1d"], name="flatten_unsqueeze"),
        N("Concat", ["flatten.lead", "channels_1d"], ["flat_shape"], name="flatten_concat", axis=0),
        N("Reshape", ["pool_out", "flat_shape"], ["flat"], name="flatten_reshape"),
        N("MatMul", ["flat", "fc.weight"], ["fc_mm"], name="fc_matmul"),
        N("Add", ["fc_mm", "fc.bias"], ["logits"], name="fc_add"),
    ]
    graph = helper.make_graph(
        nodes,
        "onnxslim_demo",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="onnxslim-demo",
        ir_version=IR_VERSION,
    )
    return model


def verify(model: onnx.ModelProto) -> np.ndarray:
    """Full-check the model and run it once on onnxruntime; return the logits."""
    import onnxruntime as ort

    onnx.checker.check_model(model, full_check=True)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # silence the expected "unused initializer" warning
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    (logits,) = sess.run(["logits"], {"input": x})
    if logits.shape != (2, 10) or not np.isfinite(logits).all():
        raise RuntimeError(
            f"bad demo output: shape {logits.shape}, finite={np.isfinite(logits).all()}"
        )
    return logits


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    model = build_model()
    logits = verify(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out)
    print(
        f"{out}: {len(model.graph.node)} nodes, {out.stat().st_size} bytes, "
        f"logits[0]={np.array2string(logits[0], precision=3)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
