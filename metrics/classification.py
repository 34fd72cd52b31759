"""Top-k accuracy of isolated-sign recognition, per instance and per class (the ISLR papers' tables).

per-instance top-k: the share of clips whose true class is among their k highest scores;
per-class top-k: that share computed for each class present among the targets, then averaged over
those classes (rare and frequent classes weigh the same). A clip's true class is in its top k when
fewer than k classes score strictly higher (ties count for it). Percent.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def topk_hits(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """(N,) bool: the target is among the k highest of its row of scores (N, C)."""
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets, np.int64)
    if scores.ndim != 2 or len(scores) != len(targets):
        raise ValueError(f"scores must be (N, C) for N targets, got {scores.shape} for {len(targets)}")
    if len(targets) and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError(f"targets must be class indices in 0..{scores.shape[1] - 1}")
    own = scores[np.arange(len(targets)), targets]
    return (scores > own[:, None]).sum(1) < k


def topk_accuracy(scores: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """{"top{k}": per-instance, "class_top{k}": per-class} accuracies in percent (0 for no clips)."""
    targets = np.asarray(targets, np.int64)
    out = {}
    classes = np.unique(targets)
    for k in ks:
        hits = topk_hits(scores, targets, k)
        out[f"top{k}"] = 100.0 * float(hits.mean()) if len(hits) else 0.0
        out[f"class_top{k}"] = 100.0 * float(np.mean([hits[targets == c].mean() for c in classes])) if len(classes) else 0.0
    return out
