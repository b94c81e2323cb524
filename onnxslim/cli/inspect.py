"""`onnxslim inspect MODEL`: what a model is, without optimizing or running it."""

from __future__ import annotations

import json

import click

from onnxslim.cli.exits import errors_to_exit_codes
from onnxslim.errors import OnnxSlimError
from onnxslim.model import io
from onnxslim.model.stats import model_info
from onnxslim.render import tables


@click.command("inspect", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead.")
def inspect_command(model_path, as_json):
    """Show MODEL's inputs and outputs, opsets, IR version, producer, op histogram, parameters,
    file size and external data, and why onnxslim would refuse it, if it would."""
    with errors_to_exit_codes():
        model = io.load(model_path, validate=False)  # described even where it is refused
        try:
            io.validate_model(model, model_path)
            invalid = None
        except OnnxSlimError as err:
            invalid = str(err)
        info = model_info(model, model_path, invalid)
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
    else:
        tables.show(tables.inspect_report(info), tables.report_console())
