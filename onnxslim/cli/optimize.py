"""`onnxslim optimize` (default command): lossless passes, optional INT8, check, save, report."""

from __future__ import annotations

import dataclasses
import datetime
import os
import shlex
import sys
import textwrap
import warnings
from pathlib import Path

import click
import onnx
import onnx_ir as ir

from onnxslim import bench, data, optimizer
from onnxslim.cli.exits import errors_to_exit_codes, warnings_to_stderr
from onnxslim.cli.params import SizeParam
from onnxslim.errors import OnnxSlimError, ReportWarning
from onnxslim.model import files, interface, io
from onnxslim.model.external import has_external_data
from onnxslim.model.stats import file_bytes
from onnxslim.passes.registry import REGISTRY, get, rewrites
from onnxslim.quantization import QuantizeConfig, quantize
from onnxslim.quantization.calibration import RANGE_METHODS
from onnxslim.quantization.config import MODES, ROUNDING_CHOICES
from onnxslim.quantization.plan import ACTIVATION_TYPES, WEIGHT_RANGES
from onnxslim.quantization.splits import HELD_OUT
from onnxslim.quantization.targets import CHOICES as TARGET_CHOICES
from onnxslim.render import html, tables
from onnxslim.render.format import input_shapes
from onnxslim.render.jsonfile import write_json
from onnxslim.render.verdict import slower_warning
from onnxslim.runtime import Session


def _pass_list() -> str:
    """The passes for --skip, one per line, descriptions wrapped to fit 100 columns; click's `\\b`
    marker keeps click from re-wrapping the paragraph."""
    width = max(len(spec.name) for spec in REGISTRY)
    lines = ["\b"]
    for spec in REGISTRY:
        lines += textwrap.wrap(
            spec.description,
            width=96,
            initial_indent=f"{spec.name:<{width}}  ",
            subsequent_indent=" " * (width + 2),
        )
    return "\n".join(lines)


class _Int8Mode(click.Choice):
    """--int8's mode; data given in its place is pointed to --calibration."""

    def convert(self, value, param, ctx):
        if value not in self.choices and ("/" in value or "." in value or Path(value).exists()):
            self.fail(
                f"{value!r} is not an INT8 mode ({', '.join(self.choices)}): calibration data "
                "goes after --calibration, e.g. --int8 --calibration DATA",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


@click.command(
    "optimize",
    epilog="Passes (for --skip):\n\n" + _pass_list(),
    context_settings={"max_content_width": 120, "help_option_names": ["-h", "--help"]},
)
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=True, path_type=Path))
@click.argument("output_arg", metavar="[OUTPUT]", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "output_opt",
    type=click.Path(path_type=Path),
    help="Where to write the result.",
)
@click.option(
    "--skip", multiple=True, metavar="NAME", help="Leave out a pass (repeat, or comma-separate)."
)
@click.option(
    "--size-threshold",
    type=SizeParam(),
    default=None,
    help="Most bytes constant folding may add per folded tensor, only ever for work ONNX Runtime "
    "cannot fold at load (what a run-time shape gives) [default: 1MiB].",
)
@click.option(
    "--size-budget",
    type=SizeParam(),
    default=None,
    help="Most bytes constant folding may add to the whole model, only ever for work ONNX "
    "Runtime cannot fold at load [default: 1% of the model, at least 64KiB].",
)
@click.option(
    "--keep-initializer-inputs",
    is_flag=True,
    help="Keep initializers that are also graph inputs overridable instead of freezing them.",
)
@click.option(
    "--inline-functions",
    is_flag=True,
    help="Inline model-local functions before optimizing (by default they are kept and optimized).",
)
@click.option(
    "--no-check", is_flag=True, help="Skip comparing outputs with the original on ONNX Runtime."
)
@click.option(
    "--require-check",
    is_flag=True,
    help="Fail (exit 1) when the result cannot be checked, instead of writing it as 'not checked'.",
)
@click.option(
    "--target-opset",
    type=click.IntRange(min=1),
    metavar="N",
    help="Convert the model to default opset N first (models below opset 7 go to 7 anyway).",
)
@click.option(
    "--check-inputs",
    type=click.Path(exists=True, path_type=Path),
    help="Inputs for the check: a .npy/.npz file of samples stacked along the first axis, a "
    "folder of .npy/.npz files (one sample each) or of images (see --preprocess) [default: "
    "random].",
)
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    metavar="NAME:DIMS",
    help="Dims for a dynamic input in the check, e.g. images:1,3,320,320 (repeatable).",
)
@click.option(
    "--input-shapes",
    "--overwrite-input-shape",
    "input_shapes",
    multiple=True,
    metavar="NAME:DIMS",
    help="Fix an input's dims in the saved model, e.g. images:1,3,640,640 (repeatable); "
    "what becomes static is folded.",
)
@click.option(
    "--inputs",
    "cut_inputs",
    multiple=True,
    metavar="NAMES",
    help="Cut the graph: these values become its inputs (comma-separated or repeated).",
)
@click.option(
    "--outputs",
    "cut_outputs",
    multiple=True,
    metavar="NAMES",
    help="Cut the graph: these values become its outputs (comma-separated or repeated).",
)
@click.option(
    "--check-rtol",
    type=click.FloatRange(min=0),
    metavar="X",
    help="Relative tolerance of the check for float outputs [default: 1e-4 for float32].",
)
@click.option(
    "--check-atol",
    type=click.FloatRange(min=0),
    metavar="X",
    help="Absolute tolerance of the check for float outputs [default: 1e-5 for float32].",
)
@click.option(
    "--external-data", is_flag=True, help="Save weights to OUTPUT.data (automatic above 2 GB)."
)
@click.option("--overwrite", is_flag=True, help="Allow OUTPUT to be the INPUT file itself.")
@click.option(
    "--report",
    "--json",
    "report_path",
    type=click.Path(path_type=Path),
    help="Also write the report as JSON.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path),
    help="With --int8: also write the report as a self-contained HTML page.",
)
@click.option(
    "--bench",
    "run_bench",
    is_flag=True,
    help="Then benchmark OUTPUT against INPUT on ONNX Runtime CPU (speed and drift).",
)
@click.option(
    "--dtype",
    type=click.Choice(["fp32", "fp16"]),
    default="fp32",
    show_default=True,
    help="fp16: convert float32 to float16 after the lossless passes (unsafe ops stay float32), "
    "refused beyond --max-drift [default: cosine>=0.999,rel_err<=0.01: every sample's cosine, the "
    "relative error over all samples].",
)
@click.option(
    "--keep-io-types/--no-keep-io-types",
    default=True,
    show_default=True,
    help="With --dtype fp16: graph inputs and outputs stay float32 (Casts inside the model).",
)
@click.option(
    "--int8",
    is_flag=False,
    flag_value="auto",
    default=None,
    type=_Int8Mode(list(MODES)),
    help="Quantize to INT8 after the lossless passes (needs --calibration): static (calibrated "
    "QDQ), dynamic (MatMul, for transformers) or auto (the default: static, or dynamic where "
    "static misses --max-drift, or without one where its worst selection sample's cosine is "
    "below 0.99 on a MatMul model, or where timed the better trade; and where static INT8 does "
    "not pay for its drift in time "
    "saved on this CPU (timed: 1 dB of SNR per 1%), float compute on the int8-stored weights).",
)
@click.option(
    "--calibration",
    metavar="DATA",
    help=(
        "INT8 calibration data: a .npy/.npz folder (one sample a file), one .npz of samples "
        "stacked along the first axis, an image folder (with --preprocess) or random:N."
    ),
)
@click.option(
    "--preprocess",
    metavar="SPEC",
    help="How the images of an image folder given as --calibration (required there) or "
    "--check-inputs (default: RGB pixels in [0, 1]) become the model's input, e.g. "
    "resize=256,crop=224,scale=1/255,mean=0.485;0.456;0.406,std=0.229;0.224;0.225,"
    "layout=NCHW,order=RGB.",
)
@click.option(
    "--calibration-method",
    type=click.Choice(list(RANGE_METHODS)),
    default="percentile",
    show_default=True,
    help="How activation ranges are chosen.",
)
@click.option(
    "--percentile",
    type=click.FloatRange(50, 100),
    help="Percentile for --calibration-method percentile; giving one turns off the choice "
    "[default: 99.99, or 99.9, 99.999 or per-tensor mse ranges "
    "where closer to float on the selection samples].",
)
@click.option(
    "--per-tensor", is_flag=True, help="One weight scale per tensor instead of per output channel."
)
@click.option(
    "--weight-range",
    type=click.Choice(list(WEIGHT_RANGES)),
    default="minmax",
    show_default=True,
    help="Per-channel weight clip: the largest |w|, or the clip of least weight quantization MSE.",
)
@click.option(
    "--weight-rounding",
    type=click.Choice(list(ROUNDING_CHOICES)),
    default="gptq",
    show_default=True,
    help="GPTQ: each layer's weights rounded to change its output least on the calibration "
    "samples; nearest: each weight to its nearest level (faster to quantize); auto keeps GPTQ "
    "where it is closer on the selection samples (dynamic INT8's weights: GPTQ).",
)
@click.option(
    "--activation-type",
    type=click.Choice(list(ACTIVATION_TYPES)),
    default="uint8",
    show_default=True,
    help="uint8 asymmetric or int8 symmetric activations.",
)
@click.option(
    "--target",
    type=click.Choice(list(TARGET_CHOICES)),
    default="auto",
    show_default=True,
    help="The CPU the model will run on; auto detects this one.",
)
@click.option(
    "--equalize",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help=(
        "Cross-layer equalization of Conv pairs; "
        "auto keeps it where it brings INT8 closer to float."
    ),
)
@click.option(
    "--bias-correction",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Correct the output shift weight rounding causes; auto keeps it where it helps.",
)
@click.option(
    "--smooth",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Dynamic INT8: balance MatMul input channels onto the weights (SmoothQuant); "
    "auto keeps it where it brings INT8 closer to float.",
)
@click.option(
    "--exclude-op", multiple=True, metavar="TYPE", help="Keep every node of this op type in float."
)
@click.option("--exclude-node", multiple=True, metavar="NAME", help="Keep this node in float.")
@click.option("--quantize-op", multiple=True, metavar="TYPE", help="Quantize only these op types.")
@click.option(
    "--max-drift",
    metavar="SPEC",
    help="INT8 drift budget on held-out data, e.g. cosine>=0.99 (every sample's cosine, as "
    "predicted for new samples from the selection samples; sensitive nodes go back to float); "
    "with --dtype fp16, the float16 drift budget (every sample's cosine as measured).",
)
@click.option(
    "--eval-split",
    type=click.FloatRange(0, 0.9),
    default=None,
    help="Share of the data for automatic choices (drift budget, CLE, bias correction) "
    "[default: 0.2, and at least 8 samples (16 with --max-drift) while 16 are left to "
    "calibrate on].",
)
@click.option(
    "--test-split",
    type=click.FloatRange(0, 0.9),
    default=0.2,
    show_default=True,
    help="Share of the data for the reported drift, which no automatic choice sees.",
)
@click.option(
    "--held-out",
    type=click.Choice(list(HELD_OUT)),
    default="spread",
    show_default=True,
    help="Which samples of DATA are held out for selection and test: spread evenly through it "
    "(every split sees all of a folder sorted by name or class), or its last ones.",
)
@click.option(
    "--debug-layers",
    is_flag=True,
    help="INT8: report each quantized node's own error (float inputs) and the accumulated one "
    "(INT8 compute is kept even where it does not pay for its drift).",
)
@click.option(
    "--require-speedup",
    is_flag=True,
    help="Fail when the INT8 model is not faster than float here.",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Also list which pass changed the graph, per round."
)
@click.option(
    "-q", "--quiet", is_flag=True, help="No report and no progress: only warnings and errors."
)
def optimize_command(
    input_path,
    output_arg,
    output_opt,
    skip,
    size_threshold,
    size_budget,
    keep_initializer_inputs,
    inline_functions,
    no_check,
    require_check,
    target_opset,
    check_inputs,
    shapes,
    input_shapes,
    cut_inputs,
    cut_outputs,
    check_rtol,
    check_atol,
    external_data,
    overwrite,
    report_path,
    html_path,
    run_bench,
    dtype,
    keep_io_types,
    int8,
    verbose,
    quiet,
    **int8_options,
):
    """Optimize INPUT losslessly (prune, fold, fuse), optionally quantize it to INT8,
    and write OUTPUT."""
    with errors_to_exit_codes() as written, warnings_to_stderr():
        if output_arg and output_opt and output_arg != output_opt:
            raise OnnxSlimError("give the output once: either as OUTPUT or with -o")
        output = output_opt or output_arg
        if run_bench and output is None:
            raise OnnxSlimError("--bench needs an output path to compare with the input")
        cut_inputs, cut_outputs = optimizer.names(cut_inputs), optimizer.names(cut_outputs)
        cut = bool(cut_inputs or cut_outputs)
        if run_bench and cut:
            raise OnnxSlimError(
                "--bench compares OUTPUT with INPUT, which --inputs/--outputs give other inputs "
                "or outputs: run onnxslim bench on a cut copy instead"
            )
        if int8 and not int8_options["calibration"]:
            raise OnnxSlimError(
                "--int8 needs --calibration DATA: real inputs (a .npy/.npz folder, one .npz, "
                "an image folder with --preprocess) or random:N for N random inputs"
            )
        if int8_options["calibration"] and not int8:
            raise OnnxSlimError("--calibration is for INT8: add --int8")
        if int8_options["preprocess"] is not None and not int8 and check_inputs is None:
            raise OnnxSlimError(
                "--preprocess reads images: add --int8 --calibration FOLDER "
                "or --check-inputs FOLDER"
            )
        if no_check and check_inputs is not None:
            raise OnnxSlimError("--check-inputs gives the check inputs; --no-check skips it")
        if int8 and dtype != "fp32":
            raise OnnxSlimError("--int8 and --dtype fp16 exclude each other: choose one")
        if int8 and keep_initializer_inputs:
            raise OnnxSlimError(
                "--keep-initializer-inputs keeps weights overridable; --int8 stores them as "
                "int8 constants: choose one"
            )
        if int8 and check_inputs is not None:
            raise OnnxSlimError(
                "--check-inputs is for the lossless check; with --int8 the held-out part "
                "of --calibration measures the drift"
            )
        skipped = [name.strip() for item in skip for name in item.split(",") if name.strip()]
        if keep_initializer_inputs:
            skipped.append("freeze-initializer-inputs")
        for name in skipped:
            get(name)
        if output is not None:
            _check_output(input_path, output, overwrite)
        if html_path is not None and not int8:
            raise OnnxSlimError(
                "--html writes the INT8 report (with --int8); for a page comparing two models, "
                "run `onnxslim bench INPUT OUTPUT --html PAGE`"
            )
        for path, what in ((report_path, "report"), (html_path, "HTML page")):
            if path is not None:
                _check_writable(path, what)
        lossless = {
            "skip": skipped,
            "size_threshold": size_threshold,
            "size_budget": size_budget,
            "inline_functions": inline_functions,
            "target_opset": target_opset,
        }
        # a bad INT8 option: one clear line before the model is read
        config = _int8_config(int8, int8_options, lossless, quiet) if int8 else None
        calibration = int8_options["calibration"]
        if int8:
            data.check_preprocess(
                calibration, int8_options["preprocess"], "--calibration", "--preprocess"
            )
            if shapes and not data.is_random(calibration):
                raise OnnxSlimError(
                    "--shape applies to random inputs (--calibration random:N); "
                    "the calibration data fixes its own shapes"
                )
        elif check_inputs is not None:
            data.check_preprocess(
                check_inputs, int8_options["preprocess"], "--check-inputs", "--preprocess"
            )
        # fails fast, with a clear line, on a file that is not a usable model
        model = io.load(input_path)
        shape_map = data.parse_shapes(shapes)
        fixed = data.parse_shapes(input_shapes)
        # the cut original is what the check compares with: no file of it (source None)
        cut_note = optimizer.cut_graph(model, cut_inputs, cut_outputs) if cut else None
        if shape_map:  # a name or dims that do not fit: an error, not a check left out unseen
            data.resolve_shapes(data.input_specs(model), shape_map)
        samples = None
        if check_inputs is not None and not no_check:
            specs = [
                dataclasses.replace(spec, shape=fixed[spec.name]) if spec.name in fixed else spec
                for spec in data.input_specs(model)
            ]
            samples = data.load_samples(
                check_inputs,
                specs,
                int8_options["preprocess"],
                what="--check-inputs",
                default_pixels=True,
            )
        console = tables.report_console(quiet)
        messages = tables.message_console()  # warnings: shown with --quiet too
        for name, dims in shape_map.items():
            if name in fixed and fixed[name] != dims:
                raise OnnxSlimError(f"input {name!r}: --shape and --input-shapes disagree")
        bench_shapes = {**fixed, **shape_map}
        if int8:
            if cut_note:
                console.print(f"note: {cut_note}", soft_wrap=True)
            if fixed:
                interface.set_input_shapes(model, fixed)
                if data.is_random(calibration):
                    shape_map = bench_shapes
            specs = data.input_specs(model)
            # an unchanged model is handed over as its file: quantize frees what it loads
            source = model if cut or fixed else input_path
            files = Int8Files(
                input_path,
                output,
                # the INT8 model keeps the input's layout: external data if it came with it
                external_data or has_external_data(model),
                html_path,
                # the input as on disk (its external data too), as the lossless report gives it;
                # a cut or reshaped model: as quantize serialized it (float is timed on it too)
                None if cut or fixed else file_bytes(model, input_path),
            )
            del model
            data_spec = (calibration, int8_options["preprocess"], shape_map)
            report_data = _quantize(
                source, specs, config, data_spec, files, (console, messages), written
            )
        else:
            options = optimizer.OptimizeOptions(
                skip=tuple(skipped),
                size_threshold=size_threshold,
                size_budget=size_budget,
                inline_functions=inline_functions,
                target_opset=target_opset,
                check=not no_check,
                check_inputs=samples,
                shapes=shape_map,
                require_check=require_check,
                check_rtol=check_rtol,
                check_atol=check_atol,
                input_shapes=fixed or None,
                dtype=dtype,
                keep_io_types=keep_io_types,
                max_drift=int8_options["max_drift"],
            )
            spinner = tables.message_console(quiet).status("optimizing", spinner="dots")
            with spinner as status, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the report says "not checked" itself
                # saved first, then checked as written: no second copy of a large model's weights
                result = optimizer.optimize_with_report(
                    model,
                    options,
                    source=None if cut else input_path,
                    on_pass=lambda name: status.update(f"optimizing: {name}"),
                    output=output,
                    external_data=external_data or None,
                )
            if cut_note:
                result.notes.insert(0, cut_note)
            if output is not None:
                written.append(output)
            _report(result, console, messages, verbose, input_path, output)
            report_data = {
                "input": str(input_path),
                "output": str(output) if output else None,
                **result.to_dict(),
            }
        if run_bench:
            history = None if int8 else result.history
            try:
                measured = _bench(
                    input_path, output, samples, bench_shapes, console, messages, history
                )
            except OnnxSlimError:  # the random inputs break the model: those the check found
                # the first: the check's others are all zeros, or at other dims
                found = None if int8 or samples or bench_shapes else (result.check_feeds or [])[:1]
                if not found:
                    raise
                tables.warn(messages, "benchmarked on the inputs the check found")
                measured = _bench(input_path, output, found, {}, console, messages, history)
            report_data["bench"] = measured.to_dict()
        if report_path:
            write_json(report_data, report_path)


def _bench(input_path, output, samples, shapes, console, messages, history) -> bench.BenchReport:
    """`--bench`: OUTPUT against INPUT, the report with its verdict on `console`, and a warning on
    `messages` when OUTPUT is measurably slower, naming the passes to skip (from the optimizer's
    `history`; None: not known, as after INT8)."""
    measured = bench.benchmark(
        [input_path, output],
        inputs=samples,
        shapes=shapes if samples is None else None,
        progress=not console.quiet,
    )
    measured.render(console)
    for verdict in measured.verdicts:
        if verdict.slower:
            tables.warn(messages, slower_warning(verdict, *_suspects(history)))
    return measured


def _suspects(history) -> tuple[list[str] | None, str]:
    """The passes a slowdown can come from, and their family: the rewrites this run applied, or
    when there were none, the folding and cleanup passes that changed the graph."""
    if history is None:
        return None, "rewrite"
    applied = list(dict.fromkeys(name for _, name, _, _ in history))
    found = rewrites(applied)
    if found:
        return found, "rewrite"
    return [name for name in applied if get(name).family in ("fold", "cleanup")], "fold/cleanup"


#: --equalize / --bias-correction / --smooth choices as `quantize` takes them.
_LEVER = {"auto": "auto", "on": True, "off": False}


@dataclasses.dataclass(frozen=True)
class Int8Files:
    """The files of an INT8 run: the input (`input_bytes` on disk, external data included; None
    where a cut or reshaped copy of it is quantized), the output (None: not written;
    `external_data`: its weights beside it) and the HTML page."""

    input_path: Path
    output: Path | None
    external_data: bool
    html_path: Path | None
    input_bytes: int | None


def _int8_config(mode: str, options: dict, lossless: dict, quiet: bool) -> QuantizeConfig:
    """The QuantizeConfig of the CLI's INT8 `options` (click's names) for `mode`, with the
    lossless passes' `lossless` options; OnnxSlimError for a bad one."""
    return QuantizeConfig(
        method=options["calibration_method"],
        percentile=options["percentile"],
        per_channel=not options["per_tensor"],
        weight_range=options["weight_range"],
        weight_rounding=options["weight_rounding"],
        activation_type=options["activation_type"],
        target=options["target"],
        equalize=_LEVER[options["equalize"]],
        bias_correction=_LEVER[options["bias_correction"]],
        smooth=_LEVER[options["smooth"]],
        exclude_ops=frozenset(options["exclude_op"]),
        exclude_nodes=frozenset(options["exclude_node"]),
        quantize_ops=frozenset(options["quantize_op"]) or None,
        max_drift=options["max_drift"],
        eval_split=options["eval_split"],
        test_split=options["test_split"],
        held_out=options["held_out"],
        debug_layers=options["debug_layers"],
        mode=mode,
        require_speedup=options["require_speedup"],
        progress=not quiet,
        optimize_options=lossless,
        random_inputs=data.is_random(options["calibration"]),
    )


def _quantize(
    model,
    specs: list[data.InputSpec],
    config: QuantizeConfig,
    calibration: tuple[str, str | None, dict],
    files: Int8Files,
    consoles: tuple,
    written: list[Path],
) -> dict:
    """Calibrate `model` (loaded, or its file; its inputs `specs`) on `calibration` (the data,
    its --preprocess, the --shape dims of random:N), quantize as `config` says, measure, save
    and report to `files`; returns the JSON report. The report goes to the first of `consoles`
    (stdout), warnings to the second (stderr). The sizes reported are the files' on disk (a cut
    or reshaped model's before: as serialized)."""
    source, preprocess, shapes = calibration
    console, messages = consoles
    random = data.is_random(source)
    # random data for the model quantized (cut by --inputs, dims fixed: not the file), at dims it
    # runs with (a reflect Pad needs a long enough input, ...); one past 2 GB held in memory
    # (cut): plain random data, as quantize makes on files
    runnable = (model if isinstance(model, Path) else _as_proto(model)) if random else None
    run = Session(runnable, what="the model").run if runnable is not None else None
    samples = data.load_samples(
        source,
        specs,
        preprocess=preprocess,
        shapes=shapes,
        model=runnable,
        run=run,
        what="--calibration",
    )
    del runnable, run  # its session: quantize makes its own
    if random:
        tables.warn(
            messages,
            "calibrating on random data: the drift figures say little about real inputs "
            f"(calibrated at {input_shapes(data.sample_shapes(samples))})",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)  # the report, printed below, has them
        result = quantize(model, samples, config)
    guessed = random and data.defaulted_dims_warning(specs, shapes, "calibrated", samples[0])
    if guessed:
        # a BERT-large calibrated at 32 tokens drifted to cosine 0.9875 at 8 (where anything
        # computes in INT8: not weight-only, not without INT8 added)
        if result.report.mode in ("static", "dynamic"):
            guessed += (
                "; INT8 calibrated at one size may drift further at others: real samples of "
                "the sizes you deploy calibrate it for them"
            )
        tables.warn(messages, guessed)
    output = files.output
    if output is not None:
        result.report.size_after = io.save(result.model, output, files.external_data or None)
        result.report.size_before = files.input_bytes or result.report.size_before
        written.append(output)
    result.report.render(console, messages)
    console.print(
        f"wrote {output}" if output else "no output path given: nothing written", soft_wrap=True
    )
    if files.html_path:
        html.write_int8(
            result.report,
            files.html_path,
            command=shlex.join(["onnxslim", *sys.argv[1:]]),
            files=[("Input", str(files.input_path)), ("Output", str(output or "not written"))],
            created=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            versions=bench.tool_versions(),
        )
    return {
        "input": str(files.input_path),
        "output": str(output) if output else None,
        "int8": result.report.to_dict(),
    }


def _as_proto(model: ir.Model) -> onnx.ModelProto | None:
    """`model` as one ModelProto (what synthesis reads), or None where one cannot hold it."""
    data = io.serialized(model)
    return None if data is None else onnx.ModelProto.FromString(data)


def _check_output(input_path: Path, output: Path, overwrite: bool) -> None:
    """Fail before any work when the output cannot or must not be written."""
    if files.same_file(input_path, output) and not overwrite:
        raise OnnxSlimError(f"{output}: is the input model; pass --overwrite to replace it")
    _check_writable(output, "output")


def _check_writable(path: Path, what: str) -> None:
    if path.is_dir():
        raise OnnxSlimError(f"{path}: is a folder; give a file name for the {what}")
    folder = path.parent
    if not folder.is_dir():
        raise OnnxSlimError(f"{path}: {what} folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OnnxSlimError(f"{path}: {what} folder {folder} is not writable")


def _report(
    result: optimizer.OptimizeResult,
    console,
    messages,
    verbose: bool,
    input_path: Path,
    output: Path | None,
) -> None:
    """The before/after table (with `verbose`, the passes that changed the graph) and a footer on
    `console` (stdout); a check that could not run is also a warning on `messages` (stderr)."""
    checked = (
        f"outputs match the original on ONNX Runtime, on {result.check_inputs}"
        if result.checked
        else "not checked (--no-check)"
    )
    if result.check_skipped:
        checked = f"not checked: {result.check_skipped}"
        tables.warn(messages, checked)
    if result.growth:
        tables.warn(messages, result.growth)
    for warning in result.warnings:
        tables.warn(messages, warning)
    if result.fp16 is not None and result.checked:
        checked = f"lossless passes: {checked}; " + (
            f"float16 drift within {result.fp16['budget']}"
            if result.fp16["budget"]
            else "float16 drift not measured"
        )
    where = f"wrote {output}" if output else "no output path given: nothing written"
    footer = f"{where} in {result.seconds:.2f} s, {result.rounds} round(s); {checked}"
    notes = [f"note: {note}" for note in result.notes]
    tables.show(
        [
            tables.comparison(result.before, result.after, f"onnxslim {input_path.name}"),
            *([tables.pass_history(result.history)] if verbose else []),
            *(tables.fp16_report(result.fp16) if result.fp16 is not None else []),
            *notes,
            footer,
        ],
        console,
    )
