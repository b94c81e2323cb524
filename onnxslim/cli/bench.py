"""`onnxslim bench`: compare models on ONNX Runtime CPU.

Exits 1 when a --max-drift/--min-speedup check fails.
"""

from __future__ import annotations

import shlex
import sys

import click

from onnxslim.bench import benchmark
from onnxslim.cli.exits import errors_to_exit_codes, warnings_to_stderr
from onnxslim.data import check_preprocess, parse_preprocess, parse_shapes
from onnxslim.drift import parse_max_drift
from onnxslim.render import tables
from onnxslim.runtime import OPT_LEVELS


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--inputs",
    metavar="PATH",
    help="Input data: a .npy/.npz folder (one sample a file), a .npy/.npz file of samples "
    "stacked along the first axis, an image folder, or random:N.",
)
@click.option(
    "--preprocess",
    metavar="SPEC",
    help=(
        "How the images of an image folder given as --inputs become the model's input "
        "(required with images), e.g. "
        "resize=256,crop=224,mean=0.485;0.456;0.406,std=0.229;0.224;0.225."
    ),
)
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    metavar="NAME:DIMS",
    help="Dims of a dynamic input for random data, e.g. x:1,3,224,224 (repeatable).",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Intra-op threads."
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Timed runs per model.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Untimed runs per model first.",
)
@click.option(
    "--ort-opt-level",
    type=click.Choice(list(OPT_LEVELS)),
    default="all",
    show_default=True,
    help="ONNX Runtime's own graph optimizations at session creation.",
)
@click.option(
    "--max-drift",
    metavar="SPEC",
    help="Fail (exit 1) beyond this drift, e.g. cosine>=0.99,max_abs<=1e-3 (cosine: every "
    "sample's; the others over all samples).",
)
@click.option(
    "--min-speedup",
    type=float,
    metavar="X",
    help="Fail (exit 1) when a model is less than X times faster.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write every figure as JSON."
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Write a self-contained HTML report.",
)
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory subprocesses.")
@click.option(
    "-q", "--quiet", is_flag=True, help="No table or progress: only warnings, failures and errors."
)
def bench_command(
    models,
    inputs,
    preprocess,
    shapes,
    threads,
    runs,
    warmup,
    ort_opt_level,
    max_drift,
    min_speedup,
    json_path,
    html_path,
    no_memory,
    quiet,
):
    """Benchmark MODELS on ONNX Runtime CPU; the first is the reference for speedup and drift."""
    with errors_to_exit_codes(), warnings_to_stderr():
        budget = parse_max_drift(max_drift) if max_drift else None
        check_preprocess(inputs, preprocess, "--inputs", "--preprocess")
        report = benchmark(
            models,
            inputs=inputs,
            preprocess=parse_preprocess(preprocess) if preprocess else None,
            shapes=parse_shapes(shapes) or None,
            threads=threads,
            runs=runs,
            warmup=warmup,
            ort_opt_level=ort_opt_level,
            measure_memory=not no_memory,
            progress=not quiet,
        )
        report.command = shlex.join(["onnxslim", *sys.argv[1:]])
        if json_path:
            report.write_json(json_path)
        if html_path:
            report.write_html(html_path)
    if not quiet:
        report.render(tables.report_console())
    failures = report.check(budget, min_speedup)
    for line in failures:
        click.echo(f"FAIL {line}", err=True)
    click.get_current_context().exit(1 if failures else 0)
