"""Timing two onnxruntime sessions fairly against each other in one process."""

from __future__ import annotations

import statistics
import time
from typing import Sequence


def quiet_options(threads: int) -> dict:
    """Session options for timing: level ALL, and thread pools that do not spin, so that two
    sessions in one process do not spin against each other on a few cores."""
    import onnxruntime as ort

    return dict(
        intra_op_num_threads=threads,
        graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        config={"session.intra_op.allow_spinning": "0"},
    )


def time_in_turn(first, second, feeds_list: Sequence[dict], repeats: int) -> tuple[float, float]:
    """Median milliseconds per run of each session, run alternately so both see the same machine."""
    first_times, second_times = [], []
    for _ in range(repeats):
        for feeds in feeds_list:
            start = time.perf_counter()
            first.run(None, feeds)
            first_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            second.run(None, feeds)
            second_times.append(time.perf_counter() - start)
    return statistics.median(first_times) * 1e3, statistics.median(second_times) * 1e3
