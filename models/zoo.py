"""Assemble the real-model zoo (git-ignored) under `models/zoo/`.

Usage: python models/zoo.py [--out models/zoo] [--no-check]

Four models come from PyPI wheels (`pip download --no-deps`, then unzipped):
  ppocrv4_det, ppocrv4_rec, ppocr_cls  <- rapidocr-onnxruntime==1.4.4 (PaddleOCR, opset 11/12)
  yolov8n_320                          <- nudenet==3.4.2 (YOLOv8n 320, opset 17)
One is exported with torch (random weights, seed 0), skipped with a message if torch is missing:
  transformer_encoder                  <- Embedding(1000,128)
                                          + 2x TransformerEncoderLayer(128, 4 heads, ff 512, gelu)

Existing files are kept (idempotent).
Importable: `build_zoo(out_dir)`, `ZOO_MODELS`, `random_inputs(name)`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from importlib.util import find_spec
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(__file__).resolve().parent / "zoo"
WHEELS = ["rapidocr-onnxruntime==1.4.4", "nudenet==3.4.2"]
# zoo name -> (wheel file prefix, member path inside the wheel)
WHEEL_MODELS = {
    "ppocrv4_det": (
        "rapidocr_onnxruntime-",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
    ),
    "ppocrv4_rec": (
        "rapidocr_onnxruntime-",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
    ),
    "ppocr_cls": (
        "rapidocr_onnxruntime-",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    ),
    "yolov8n_320": ("nudenet-", "nudenet/320n.onnx"),
}
TORCH_MODELS = ["transformer_encoder"]
ZOO_MODELS = [*WHEEL_MODELS, *TORCH_MODELS]
# Concrete inputs that run in onnxruntime: name -> {input: (shape, dtype)}. The Paddle models
# declare dynamic dims (cls even has dim_value -1), so these shapes are choices, not the model's.
SAMPLE_INPUTS = {
    "ppocrv4_det": {"x": ((1, 3, 320, 320), np.float32)},
    "ppocrv4_rec": {"x": ((1, 3, 48, 320), np.float32)},
    "ppocr_cls": {"x": ((1, 3, 48, 192), np.float32)},
    "yolov8n_320": {"images": ((1, 3, 320, 320), np.float32)},
    "transformer_encoder": {"input_ids": ((2, 16), np.int64)},
}
TORCH_HINT = "pip install torch==2.13.0"

# Runs in a subprocess (so importing this module never imports torch): argv[1] = output path.
_TORCH_EXPORT = r'''
import sys, torch
from torch import nn

class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(1000, 128)
        layer = nn.TransformerEncoderLayer(128, 4, 512, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        for l in self.encoder.layers:  # clones start identical: give each layer its own weights
            l.self_attn._reset_parameters()
            l.linear1.reset_parameters()
            l.linear2.reset_parameters()

    def forward(self, input_ids):
        return self.encoder(self.embed(input_ids))

def runs_dynamic(path):
    """True if the exported graph handles a batch/seq different from the export example."""
    import numpy as np, onnxruntime as ort
    try:
        ids = np.random.default_rng(0).integers(0, 1000, (3, 7), dtype=np.int64)
        out = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
            None, {"input_ids": ids}
        )[0]
        return out.shape == (3, 7, 128)
    except Exception:
        return False

torch.manual_seed(0)
model, path = Encoder().eval(), sys.argv[1]
ids = torch.randint(0, 1000, (2, 16))
names = dict(input_names=["input_ids"], output_names=["last_hidden_state"], opset_version=17)
axes = {0: "batch", 1: "seq"}
# Legacy TorchScript exporter first (classic graph); it bakes seq into MHA Reshapes in some torch
# versions (pytorch#110347), so fall back to the torch.export-based exporter if seq isn't dynamic.
torch.onnx.export(model, (ids,), path, dynamo=False,
                  dynamic_axes={"input_ids": axes, "last_hidden_state": axes}, **names)
exporter = "torchscript"
if not runs_dynamic(path):
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
    torch.onnx.export(model, (ids,), path, dynamo=True, external_data=False,
                      dynamic_shapes={"input_ids": dims}, **names)
    exporter = "dynamo"
    if not runs_dynamic(path):
        sys.exit("exported transformer_encoder does not run with dynamic batch/seq")
print(f"transformer_encoder: exported with torch {torch.__version__} ({exporter} exporter)")
'''


class ZooError(RuntimeError):
    """A zoo model could not be fetched or built."""


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _fetch_wheel_models(out_dir: Path, names: list[str]) -> None:
    """pip-download the wheels into a temp dir and extract the `names` models into out_dir."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, *WHEELS]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ZooError(f"pip download {' '.join(WHEELS)} failed: {_last_line(proc.stderr)}")
        for name in names:
            prefix, member = WHEEL_MODELS[name]
            wheels = sorted(Path(tmp).glob(f"{prefix}*.whl"))
            if not wheels:
                raise ZooError(f"no {prefix}*.whl in pip download output")
            with zipfile.ZipFile(wheels[0]) as zf:
                data = zf.read(member)
            tmp_path = out_dir / f"{name}.onnx.tmp"
            tmp_path.write_bytes(data)
            tmp_path.replace(out_dir / f"{name}.onnx")


def _export_transformer(path: Path) -> bool:
    """Export transformer_encoder with torch in a subprocess; False (with a message) if no torch."""
    if find_spec("torch") is None:
        print(
            f"zoo: torch is not installed, skipping transformer_encoder (get it with: {TORCH_HINT})"
        )
        return False
    tmp_path = path.with_name(path.name + ".tmp")
    proc = subprocess.run(
        [sys.executable, "-c", _TORCH_EXPORT, str(tmp_path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        tmp_path.unlink(missing_ok=True)
        raise ZooError(f"torch export of transformer_encoder failed: {_last_line(proc.stderr)}")
    tmp_path.replace(path)
    print(_last_line(proc.stdout))
    return True


def build_zoo(out_dir: str | Path = DEFAULT_DIR) -> dict[str, Path]:
    """Fetch/build missing zoo models into out_dir; return {name: path} of the models present."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.onnx" for name in ZOO_MODELS}
    missing = [n for n in WHEEL_MODELS if not paths[n].exists()]
    if missing:
        _fetch_wheel_models(out_dir, missing)
    for name in TORCH_MODELS:
        if not paths[name].exists():
            _export_transformer(paths[name])
    return {name: p for name, p in paths.items() if p.exists()}


def random_inputs(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds for a zoo model, with the shapes of SAMPLE_INPUTS."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp, (shape, dtype) in SAMPLE_INPUTS[name].items():
        if np.issubdtype(dtype, np.integer):
            feeds[inp] = rng.integers(0, 1000, shape, dtype=dtype)
        else:
            feeds[inp] = rng.random(shape, dtype=np.float32).astype(dtype)
    return feeds


def _describe(name: str, path: Path, check: bool) -> str:
    """One summary line: path, node count, size and (optionally) a smoke run on onnxruntime."""
    import onnx

    model = onnx.load(path)
    line = (
        f"{name:20s} {path}  {len(model.graph.node):4d} nodes  {path.stat().st_size / 1e6:6.2f} MB"
    )
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outs = sess.run(None, random_inputs(name))
        line += "  ORT ok -> " + ", ".join(str(tuple(o.shape)) for o in outs)
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=str(DEFAULT_DIR), help="output folder (default: models/zoo)"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="don't run each model once on onnxruntime"
    )
    args = parser.parse_args(argv)
    try:
        paths = build_zoo(args.out)
        for name, path in paths.items():
            print(_describe(name, path, check=not args.no_check))
    except ZooError as e:
        print(f"zoo: {e}", file=sys.stderr)
        return 1
    missing = [n for n in ZOO_MODELS if n not in paths]
    if missing:
        print(f"zoo: missing {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
