"""The `onnxslim` CLI: `onnxslim IN [-o] OUT [options]` optimizes; `onnxslim bench ...` measures;
`onnxslim inspect MODEL` describes.

Commands live in their own modules (optimize, bench, inspect); option types in params, exit codes
in exits; OnnxSlim's (PyPI) flags are translated by onnxslim.compat.
"""

from __future__ import annotations

import sys

import click

from onnxslim import compat
from onnxslim.errors import OnnxSlimError


class DefaultCommandGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to the `optimize` command.

    Usage errors (a bad option value, a missing argument) print one `error: ...` line, as all
    errors do.
    """

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args.insert(0, "optimize")
        if args and args[0] == "optimize":  # OnnxSlim's flags too, in onnxslim's spelling
            try:
                args = compat.command_args(args[1:])
            except OnnxSlimError as err:
                raise click.UsageError(str(err)) from None
        return super().parse_args(ctx, args)

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        # plain `onnxslim`: the help, as click prints it
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.format_message(), err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            click.echo(f"error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.exceptions.Abort:
            click.echo("interrupted: nothing written", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onnxslim")
def main() -> None:
    """Optimize ONNX models: `onnxslim model.onnx -o small.onnx`.
    Measure: `onnxslim bench a.onnx b.onnx`. Describe: `onnxslim inspect model.onnx`."""


from onnxslim.cli.bench import bench_command  # noqa: E402  (the commands register on `main`)
from onnxslim.cli.inspect import inspect_command  # noqa: E402
from onnxslim.cli.optimize import optimize_command  # noqa: E402

main.add_command(optimize_command, "optimize")
main.add_command(bench_command, "bench")
main.add_command(inspect_command, "inspect")
