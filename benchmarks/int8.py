"""INT8: onnxslim.quantize vs onnxruntime.quantization.quantize_static on the real-model zoo.

    python benchmarks/int8.py [--models NAME ...] [--samples 64] [--test 32] [--runs 30]
                              [--target auto] [--ablation] [--json FILE] [--markdown FILE]

Real inputs from scikit-image's bundled images (`pip install scikit-image`): photo crops for YOLO
and PP-OCR det, text-line crops for PP-OCR rec and cls (half of them upside down for cls); random
token ids for the transformer. onnxslim gets `--samples` samples and holds the last quarter out to
check its drift budget (returning nodes to float until it holds); both quantizers calibrate on the
other three quarters. ORT runs QDQ, per-channel, MinMax (its defaults otherwise).
`onnxslim.bench.benchmark` then times the float model and both INT8 models (interleaved, one thread)
and measures drift on `--test` further samples that neither quantizer saw (so the budget's fit to
its own held-out samples does not flatter the table). `--ablation` instead compares range methods,
cross-layer equalization and bias correction (no budget, no ORT, no timing) by their drift on the
same test samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onnxslim.bench import benchmark  # noqa: E402
from onnxslim.quantization import quantize  # noqa: E402

ZOO = ROOT / "models" / "zoo"
# Per-model drift budgets for onnxslim's fallback, and the issue's targets checked in the table.
BUDGETS = {
    "ppocr_cls": "top1>=0.99",
    "ppocrv4_rec": "cosine>=0.99",
    "yolov8n_320": "cosine>=0.998",
    "ppocrv4_det": None,
    "transformer_encoder": "cosine>=0.99",
}
MAX_LATENCY_RATIO = {"yolov8n_320": 0.75, "ppocr_cls": 1.0}
MAX_SIZE_RATIO = 0.3
CLASSIFIERS = {"ppocr_cls", "ppocrv4_rec"}  # top-1 agreement means something only for these outputs
# --ablation: quantize() options per column; the last is the default.
ABLATIONS = {
    "minmax": {"method": "minmax", "equalize": False, "bias_correction": False},
    "percentile 99.99": {"equalize": False, "bias_correction": False},
    "entropy": {"method": "entropy", "equalize": False, "bias_correction": False},
    "mse": {"method": "mse", "equalize": False, "bias_correction": False},
    "percentile + CLE": {"equalize": True, "bias_correction": False},
    "percentile + BC": {"equalize": False, "bias_correction": True},
    "percentile + CLE + BC": {"equalize": True, "bias_correction": True},
    "default: percentile, CLE and BC auto": {},
}
EVAL_SPLIT = 0.25
PHOTOS = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "camera",
    "coins",
    "colorwheel",
    "brick",
    "grass",
    "gravel",
    "cell",
    "clock",
    "moon",
    "cat",
    "page",
    "text",
]
TEXTS = ["text", "page"]


def _image(name: str) -> np.ndarray:
    import skimage.data

    im = np.asarray(getattr(skimage.data, name)())
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    return im[..., :3].astype(np.float32) / 255.0


def _photo_crops(n: int, size: int, rng) -> list[np.ndarray]:
    from skimage.transform import resize

    out = []
    for i in range(n):
        im = _image(PHOTOS[i % len(PHOTOS)])
        h, w = im.shape[:2]
        s = int(min(h, w) * rng.uniform(0.4, 1.0))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        crop = im[y : y + s, x : x + s][:, ::-1] if rng.random() < 0.5 else im[y : y + s, x : x + s]
        out.append(resize(crop, (size, size), anti_aliasing=True).astype(np.float32))
    return out


def _text_crops(n: int, rng) -> list[np.ndarray]:
    out = []
    for i in range(n):
        im = _image(TEXTS[i % len(TEXTS)])
        h, w = im.shape[:2]
        sh = int(rng.integers(18, 40))
        sw = int(rng.integers(sh * 3, min(w, sh * 12)))
        y, x = rng.integers(0, h - sh + 1), rng.integers(0, w - sw + 1)
        out.append(im[y : y + sh, x : x + sw])
    return out


def _ppocr_line(im: np.ndarray, height: int, width: int) -> np.ndarray:
    """PP-OCR rec/cls preprocessing: resize to `height` keeping the aspect ratio (width at most
    `width`), then (x - 0.5) / 0.5, padded on the right."""
    from skimage.transform import resize

    nw = min(width, max(1, int(np.ceil(height * im.shape[1] / im.shape[0]))))
    r = resize(im, (height, nw), anti_aliasing=True).astype(np.float32)
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :nw] = ((r - 0.5) / 0.5).transpose(2, 0, 1)
    return out[None]


def samples(model: str, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """`n` deterministic real samples for a zoo model."""
    rng = np.random.default_rng(seed)
    if model == "yolov8n_320":
        return [{"images": im.transpose(2, 0, 1)[None].copy()} for im in _photo_crops(n, 320, rng)]
    if model == "ppocrv4_det":
        from skimage.transform import resize

        mean, std = (
            np.array([0.485, 0.456, 0.406], np.float32),
            np.array([0.229, 0.224, 0.225], np.float32),
        )
        ims = _photo_crops(n - n // 4, 320, rng)
        ims += [resize(_image(TEXTS[i % 2]), (320, 320)).astype(np.float32) for i in range(n // 4)]
        return [
            {"x": ((im - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)} for im in ims
        ]
    if model == "ppocrv4_rec":
        return [{"x": _ppocr_line(im, 48, 320)} for im in _text_crops(n, rng)]
    if model == "ppocr_cls":
        crops = [c[::-1, ::-1] if i % 2 else c for i, c in enumerate(_text_crops(n, rng))]
        return [{"x": _ppocr_line(im, 48, 192)} for im in crops]
    if model == "transformer_encoder":
        return [{"input_ids": rng.integers(0, 1000, (1, 32), dtype=np.int64)} for _ in range(n)]
    raise KeyError(model)


def ort_quantize(src: Path, dst: Path, calibration: list[dict]) -> float:
    """ORT's quantize_static (QDQ, per-channel, MinMax); returns the seconds it took."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            return next(self.items, None)

    started = time.perf_counter()
    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return time.perf_counter() - started


def _split(name: str, n_samples: int, n_test: int) -> tuple[list[dict], list[dict]]:
    data = samples(name, n_samples + n_test)
    return data[:n_samples], data[n_samples:]


def run(
    name: str, n_samples: int, n_test: int, runs: int, work: Path, target: str = "auto"
) -> dict:
    src = ZOO / f"{name}.onnx"
    data, test = _split(name, n_samples, n_test)
    calib = data[: -max(2, round(len(data) * EVAL_SPLIT))]
    started = time.perf_counter()
    result = quantize(
        src,
        data,
        max_drift=BUDGETS[name],
        eval_split=EVAL_SPLIT,
        target=target,
        measure_latency=False,
        progress=False,
    )
    ours_s = time.perf_counter() - started
    ours = work / f"{name}.onnxslim.int8.onnx"
    import onnx_ir as ir

    ir.save(result.model, ours)
    theirs = work / f"{name}.ort.int8.onnx"
    ort_s = ort_quantize(src, theirs, calib)
    report = benchmark(
        [src, ours, theirs], inputs=test, runs=runs, warmup=5, measure_memory=False, progress=False
    )
    ref, mine, ort_model = report.models
    row = {
        "model": name,
        "float_mb": ref.file_size / 1e6,
        "float_ms": ref.latency.median,
        "budget": BUDGETS[name],
        "fallback": [f["node"] for f in result.report.fallback],
        "method": result.report.method,
        "target": result.report.target,
        "weight_bits": result.report.weight_bits,
        "equalized_pairs": result.report.equalized_pairs,
        "bias_correction": result.report.bias_correction,
    }
    for key, m, seconds in (("onnxslim", mine, ours_s), ("ort", ort_model, ort_s)):
        out = next(iter(m.drift.values()))
        row[key] = {
            "size_ratio": m.file_size / ref.file_size,
            "latency_ratio": m.latency.median / ref.latency.median,
            "cosine": out.cosine,
            "snr_db": out.snr_db,
            "seconds": seconds,
            "top1": out.top1_agreement if name in CLASSIFIERS else None,
        }
    row["targets"] = check_targets(row)
    return row


def check_targets(row: dict) -> list[str]:
    """The issue's targets this row misses."""
    ours, ort = row["onnxslim"], row["ort"]
    misses = []
    if ours["size_ratio"] > MAX_SIZE_RATIO:
        misses.append(f"size {ours['size_ratio']:.2f}x > {MAX_SIZE_RATIO}x")
    limit = MAX_LATENCY_RATIO.get(row["model"])
    if limit is not None and ours["latency_ratio"] > limit:
        misses.append(f"latency {ours['latency_ratio']:.2f}x > {limit}x")
    if ours["latency_ratio"] > 1.05 * ort["latency_ratio"]:
        misses.append("slower than 1.05x ORT")
    if (ours["cosine"] or 0) < (ort["cosine"] or 0):
        misses.append("cosine below ORT's")
    budget = row["budget"]
    if budget:
        metric, value = budget.split(">=")
        got = ours["top1" if metric == "top1" else "cosine"]
        if got is None or got < float(value):
            misses.append(f"{metric} {'-' if got is None else format(got, '.4f')} < {value}")
    return misses


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | float | INT8 size (ours / ORT) | latency vs float (ours / ORT) "
        "| cosine (ours / ORT) | top-1 agreement (ours / ORT) | budget, nodes back in float "
        "| targets |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def pair(key, spec):
        a, b = (row[k][key] for k in ("onnxslim", "ort"))
        return " / ".join("-" if v is None else format(v, spec) for v in (a, b))

    for row in rows:
        fb = f"{row['budget'] or '-'}, {len(row['fallback'])}"
        lines.append(
            f"| {row['model']} | {row['float_mb']:.1f} MB, {row['float_ms']:.1f} ms "
            f"| {pair('size_ratio', '.2f')}x | {pair('latency_ratio', '.2f')}x "
            f"| {pair('cosine', '.4f')} | {pair('top1', '.3f')} | {fb} "
            f"| {'met' if not row['targets'] else '; '.join(row['targets'])} |"
        )
    return "\n".join(lines)


def ablation(name: str, n_samples: int, n_test: int, target: str = "auto") -> dict:
    """Drift (cosine, SNR dB) on the test samples of each ``ABLATIONS`` configuration, no budget."""
    import onnx_ir as ir
    import onnxruntime as ort

    from onnxslim.drift import compare_outputs

    def outputs(model_bytes: bytes) -> list[dict]:
        session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return [dict(zip(names, session.run(None, s))) for s in test]

    src = ZOO / f"{name}.onnx"
    data, test = _split(name, n_samples, n_test)
    ref = outputs(src.read_bytes())
    row = {"model": name}
    for label, options in ABLATIONS.items():
        result = quantize(
            src,
            data,
            eval_split=EVAL_SPLIT,
            target=target,
            measure_latency=False,
            progress=False,
            **options,
        )
        out = next(
            iter(
                compare_outputs(
                    ref, outputs(ir.to_proto(result.model).SerializeToString())
                ).values()
            )
        )
        report = result.report
        kept = [
            name
            for name, on in (("CLE", report.equalized_pairs), ("BC", report.bias_correction))
            if on
        ]
        row[label] = {
            "cosine": out.cosine,
            "snr_db": out.snr_db,
            "kept": " + ".join(kept) or "neither",
        }
    return row


def ablation_markdown(rows: list[dict]) -> str:
    lines = ["| model | " + " | ".join(ABLATIONS) + " |", "|---" * (len(ABLATIONS) + 1) + "|"]
    for row in rows:
        cells = [f"{row[k]['cosine']:.4f} / {row[k]['snr_db']:.1f} dB" for k in ABLATIONS]
        default = row[list(ABLATIONS)[-1]]
        cells[-1] += f" ({default['kept']})"
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(BUDGETS))
    parser.add_argument(
        "--samples",
        type=int,
        default=64,
        help="samples onnxslim calibrates and checks its budget on",
    )
    parser.add_argument(
        "--test", type=int, default=32, help="further samples the table's drift is measured on"
    )
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--target", default="auto", help="onnxslim's deployment CPU: auto, avx2, vnni, arm"
    )
    parser.add_argument(
        "--ablation", action="store_true", help="compare range methods, CLE and bias correction"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    missing = [m for m in args.models if not (ZOO / f"{m}.onnx").exists()]
    if missing:
        print(f"missing zoo models {missing}: run `python models/zoo.py` first", file=sys.stderr)
        return 2
    rows = []
    table = ablation_markdown if args.ablation else markdown
    with tempfile.TemporaryDirectory(prefix="onnxslim-int8-") as tmp:
        for name in args.models:
            if args.ablation:
                rows.append(ablation(name, args.samples, args.test, args.target))
            else:
                rows.append(run(name, args.samples, args.test, args.runs, Path(tmp), args.target))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
