"""Spatial correlation of zero activations (the paper's Figure 2).

For a window size k, every k × k window of each activation plane, sliding with stride 1 and lying
wholly inside the plane, is counted; the statistic is the share of those windows whose activations
are all exactly zero. k = 1 is plain activation sparsity. A large share at k = 3 is what makes
predicting a window from its diagonal pay off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

DEFAULT_WINDOWS = (1, 2, 3, 4, 5)


def count_zero_windows(activations: np.ndarray, windows: Sequence[int], zero: int = 0) -> list[tuple[int, int]]:
    """``(all-zero windows, windows)`` for each window size k, over the k × k stride-1 windows of every plane
    of ``activations`` ``[..., H, W]``; ``(0, 0)`` where the plane is smaller than the window. ``zero`` is the
    value of a zero activation (a quantized one's zero point)."""
    counts = {}
    # all_zero[..., r, c]: the k x k window at (r, c) is all zero. A k x k window is covered by the four
    # (k-1) x (k-1) windows at its corners, so each size follows from the previous one with three ANDs.
    all_zero = activations == zero
    for k in range(1, max(windows) + 1):
        if k > 1:
            if min(all_zero.shape[-2:]) < 2:
                break
            all_zero = all_zero[..., :-1, :-1] & all_zero[..., 1:, :-1] & all_zero[..., :-1, 1:] & all_zero[..., 1:, 1:]
        counts[k] = (int(np.count_nonzero(all_zero)), all_zero.size)
    return [counts.get(k, (0, 0)) for k in windows]


@dataclass
class ZeroWindowTally:
    """All-zero and total window counts of one layer, accumulated over batches."""

    name: str
    windows: Sequence[int]
    shape: Optional[tuple[int, ...]] = None  # [C, H, W] of one image
    zero: list[int] = field(init=False)
    total: list[int] = field(init=False)

    def __post_init__(self):
        self.zero = [0] * len(self.windows)
        self.total = [0] * len(self.windows)

    def add(self, activations: np.ndarray, zero: int = 0) -> None:
        """Counts one batch ``[N, C, H, W]`` whose zero activations equal ``zero``."""
        self.shape = tuple(activations.shape[1:])
        for index, (zeros, total) in enumerate(count_zero_windows(activations, self.windows, zero)):
            self.zero[index] += zeros
            self.total[index] += total

    def merge(self, other: "ZeroWindowTally") -> None:
        """Adds the counts of ``other``, the same layer's tally over other images."""
        self.shape = self.shape or other.shape
        self.zero = [mine + theirs for mine, theirs in zip(self.zero, other.zero)]
        self.total = [mine + theirs for mine, theirs in zip(self.total, other.total)]

    def fractions(self) -> list[Optional[float]]:
        """Share of all-zero windows per window size; None where the plane is smaller than the window."""
        return [zero / total if total else None for zero, total in zip(self.zero, self.total)]


def summarize(tallies: Sequence[ZeroWindowTally], windows: Sequence[int]) -> dict:
    """The ``spatial_correlation`` section of ``report.json``."""
    layers = [
        {"name": tally.name, "shape": list(tally.shape or ()), "all_zero_fraction": tally.fractions(),
         "windows_counted": tally.total}
        for tally in tallies
    ]
    means = []
    for index in range(len(windows)):
        values = [layer["all_zero_fraction"][index] for layer in layers]
        present = [value for value in values if value is not None]
        means.append(sum(present) / len(present) if present else None)
    return {
        "windows": list(windows),
        "stride": 1,
        "definition": "share of k x k windows (stride 1, per channel, inside the plane) of each eligible "
                      "layer's activation output whose values are all exactly zero (a quantized layer's: its "
                      "zero point), over all images",
        "mean_definition": "unweighted mean over the layers that have windows of that size",
        "mean": means,
        "layers": layers,
    }
