"""``onnxpred`` command line: one subcommand a module in :mod:`onnxpred.commands`.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Expected failures raise :class:`onnxpred.errors.UserError`: one line on stderr and its exit code,
no traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from .errors import EXIT_INTERNAL, UserError

# Order is the order of `onnxpred --help`.
COMMAND_MODULES = (
    "demo",
    "export",
    "quantize",
    "rewrite",
    "validate",
    "report",
    "tune",
    "analyze",
    "crosscheck",
    "bench",
    "bench_layers",
)


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="onnxpred",
        description="Predict zero ReLU outputs of CNNs from spatial correlation and skip their MACs.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {}
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f".commands.{module_name}", __package__)
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        commands[module.NAME] = module
    return parser, commands


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(commands[args.command].run(args) or 0)
    except UserError as error:
        if args.debug:
            raise
        print(f"onnxpred {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"onnxpred {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an onnxpred bug: say so in one line, the traceback only with --debug
        if args.debug:
            raise
        print(
            f"onnxpred {args.command}: internal error: {type(error).__name__}: {error} (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
