"""The options ``bench`` and ``bench-layers`` share: thread counts, the clock, and another library to compare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import UserError
from .libraries import check_op_library
from .timing import CLOCKS, check_clock

CPU_CLOCK = "the calling thread's CPU time, minimum over runs"  # --clock cpu, for headings


@dataclass(frozen=True)
class Comparison:
    threads: list[int]
    clock: str
    against: Optional[str]  # the resolved path of the --against library


def add_arguments(parser) -> None:
    parser.add_argument("--threads", help="intra-op thread counts (default 1,2; 1 with --clock cpu)")
    parser.add_argument("--clock", default="wall", choices=CLOCKS,
                        help=f"wall: elapsed time, median over runs (default); cpu: {CPU_CLOCK}, steadier on a busy "
                             "machine, only at --threads 1")
    parser.add_argument("--against", metavar="LIBRARY.so",
                        help="also time the rewrite with this build of the op library, in turn with the installed "
                             "one, and print both and their ratio (this one's time / the installed one's)")


def parse(args, quantized: bool = False) -> Comparison:
    """The options checked, the library loaded once (UserError, InputError for a library that is not one, or
    that has no channels-last int8 op where ``quantized`` layers will be timed)."""
    default_threads = "1" if args.clock == "cpu" else "1,2"
    try:
        threads = [int(t) for t in (args.threads or default_threads).split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--threads expects integers, got {args.threads!r}") from None
    try:
        check_clock(args.clock, threads)
    except ValueError as error:
        raise UserError(str(error)) from None
    return Comparison(threads, args.clock, check_op_library(args.against, quantized) if args.against else None)
