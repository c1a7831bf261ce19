"""Errors the user can act on, and the CLI's documented exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2            # bad arguments (argparse uses 2 as well)
EXIT_INPUT = 3            # the input model or data cannot be read or is not a valid ONNX model
EXIT_UNSUPPORTED = 4      # a valid model the tool cannot handle (dynamic spatial shapes, unknown opset, ...)
EXIT_OUTPUT = 5           # the output cannot be written (missing or read-only folder, would overwrite input)
EXIT_VALIDATION = 6       # the rewritten model does not reproduce the original
EXIT_INTERNAL = 70        # a bug in onnxpred


class UserError(Exception):
    """An expected failure, reported as one line and a non-zero exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(UserError):
    exit_code = EXIT_INPUT


class UnsupportedModelError(UserError):
    exit_code = EXIT_UNSUPPORTED


class OutputError(UserError):
    exit_code = EXIT_OUTPUT


class ValidationError(UserError):
    exit_code = EXIT_VALIDATION
