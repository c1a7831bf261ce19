"""Timing two onnxruntime sessions fairly against each other in one process."""

from __future__ import annotations

import statistics
import time
from typing import Sequence


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
