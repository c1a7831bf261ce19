"""Timing onnxruntime sessions fairly against each other in one process."""

from __future__ import annotations

import statistics
import time
from typing import Iterator, Sequence

# wall: elapsed time, median over runs, right at any thread count but swayed by other processes.
# cpu: the calling thread's CPU time, minimum over runs: steadier on a shared machine, but only right at
# 1 intra-op thread, where onnxruntime runs every kernel on the calling thread (its pool threads' time
# is not the caller's).
CLOCKS = ("wall", "cpu")

# Runs of a session before it is timed or profiled. Its first run packs weights and plans onnxruntime's
# memory patterns; its second allocates the planned buffers and touches them first: in VGG-16 float32 the
# second run's stem took 8.4 ms against 2.5 ms from the third on (onnxruntime's own stem 7.7 against 2.0).
WARM_UP_RUNS = 2


def check_clock(clock: str, threads: Sequence[int]) -> None:
    """ValueError unless ``clock`` can time sessions of every thread count in ``threads``."""
    if clock not in CLOCKS:
        raise ValueError(f"--clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if clock == "cpu" and any(n != 1 for n in threads):
        raise ValueError("--clock cpu needs --threads 1: it reads the calling thread's CPU time, which misses "
                         f"the time of onnxruntime's worker threads (got --threads {','.join(map(str, threads))})")


def turns(sessions: int, inputs: int, repeats: int) -> Iterator[tuple[int, int]]:
    """(input, session) indices in the order ``sessions`` sessions run in turn, ``repeats`` times over the
    inputs: every session on an input before the next input. The session that goes first rotates from one
    input and repeat to the next: a session run right after another on the same input found it in cache,
    and measured up to 4% faster than in the other order on this project's small layers."""
    turn = 0
    for _ in range(repeats):
        for index in range(inputs):
            for position in range(sessions):
                yield index, (turn + position) % sessions
            turn += 1


def warm_up(sessions: Sequence, feeds: dict) -> None:
    """WARM_UP_RUNS untimed runs of each session on ``feeds``."""
    for session in sessions:
        for _ in range(WARM_UP_RUNS):
            session.run(None, feeds)


def time_sessions_in_turn(sessions: Sequence, feeds_list: Sequence[dict], repeats: int,
                          clock: str = "wall") -> list[float]:
    """Milliseconds per run of each session, run in :func:`turns` so all see the same machine, after
    WARM_UP_RUNS untimed runs each. wall: the median over all runs; cpu: per input the minimum over
    ``repeats``, averaged over the inputs (a rewritten model's time depends on its input)."""
    read = time.thread_time if clock == "cpu" else time.perf_counter
    warm_up(sessions, feeds_list[0])
    times = [[[] for _ in feeds_list] for _ in sessions]  # [session][input] -> seconds of each repeat
    for index, which in turns(len(sessions), len(feeds_list), repeats):
        start = read()
        sessions[which].run(None, feeds_list[index])
        times[which][index].append(read() - start)
    if clock == "cpu":
        return [statistics.fmean(min(runs) for runs in session_times) * 1e3 for session_times in times]
    return [statistics.median(t for runs in session_times for t in runs) * 1e3 for session_times in times]


def time_in_turn(first, second, feeds_list: Sequence[dict], repeats: int) -> tuple[float, float]:
    """Median wall-clock milliseconds per run of two sessions, run alternately."""
    first_ms, second_ms = time_sessions_in_turn([first, second], feeds_list, repeats)
    return first_ms, second_ms
