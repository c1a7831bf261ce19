"""Counting statistics: top-k hits, Wilson score intervals, and the KL divergence between softmaxes."""

from __future__ import annotations

import math

import numpy as np

# Two-sided 95%: the 0.975 quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; ``(0, 1)`` when there are no trials.

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0 % and 100 %, which
    matter here: agreement is often 100 % on a few hundred images.
    """
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half_width = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def top_k_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``logits`` [B, classes]: whether ``labels`` is among the k largest scores."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``logits`` [B, classes], in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_kl(reference_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per row: KL(softmax(reference) || softmax(logits)), how far a model's class distribution moved from
    the reference model's. Unlike a change of the top-1 class it moves with every image."""
    p_log, q_log = log_softmax(reference_logits), log_softmax(logits)
    return np.sum(np.exp(p_log) * (p_log - q_log), axis=1)
