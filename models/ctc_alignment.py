"""CTC forced alignment (the cross-lingual paper's Algorithm 1) and per-gloss frame segments.

The most probable CTC path that emits exactly the ground-truth glosses is found by dynamic
programming (Viterbi) over the blank-interleaved label  _ g1 _ g2 _ ... gN _  (length 2N+1):
state s at frame t comes from s (stay), s-1, or s-2 when s is a gloss different from gloss s-2.
Each frame is one numpy step over all 2N+1 states (the public code loops over states in Python).

A gloss's segment is the run of frames aligned to it, optionally widened over the neighbouring
blank frames whose most probable non-blank class is that gloss (how the paper cuts isolated
signs for its dictionary).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _numpy(log_probs) -> np.ndarray:
    lp = log_probs.detach().cpu().double().numpy() if isinstance(log_probs, torch.Tensor) else np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2:
        raise ValueError(f"log_probs must be (T, V), got shape {lp.shape}")
    return lp


def ctc_forced_align(log_probs, labels: Sequence[int], blank: int = 0) -> tuple[np.ndarray, float]:
    """Best path for `labels` through one utterance's (T, V) log-probs.

    Returns the state of every frame (T,) in 0..2N (even = blank, 2i+1 = gloss i) and the path's
    log-probability. Raises ValueError when T is too short for the labels.
    """
    lp = _numpy(log_probs)
    labels = [int(x) for x in labels]
    if any(x == blank for x in labels):
        raise ValueError(f"labels contain the blank id {blank}: {labels}")
    T, N = lp.shape[0], len(labels)
    need = N + sum(a == b for a, b in zip(labels, labels[1:]))
    if T < max(need, 1):
        raise ValueError(f"{N} glosses need at least {need} frames, got {T}")
    S = 2 * N + 1
    ext = np.full(S, blank)
    ext[1::2] = labels
    emit = lp[:, ext]  # (T, S)
    skip = np.zeros(S, dtype=bool)
    skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    neg = -np.inf
    delta = np.full(S, neg)
    delta[: min(2, S)] = emit[0, : min(2, S)]
    back = np.zeros((T, S), dtype=np.int8)  # how many states back the best predecessor is
    for t in range(1, T):
        cands = np.full((3, S), neg)
        cands[0] = delta
        cands[1, 1:] = delta[:-1]
        cands[2, 2:] = np.where(skip[2:], delta[:-2], neg)
        back[t] = cands.argmax(0)
        delta = cands[back[t], np.arange(S)] + emit[t]
    last = S - 1 if S == 1 or delta[S - 1] >= delta[S - 2] else S - 2
    score = float(delta[last])
    states = np.empty(T, dtype=np.int64)
    states[-1] = last
    for t in range(T - 1, 0, -1):
        states[t - 1] = states[t] - back[t, states[t]]
    return states, score


def gloss_segments(log_probs, labels: Sequence[int], blank: int = 0, widen: bool = True) -> list[tuple[int, int]]:
    """Frame span [start, end) of every gloss in `labels` from the forced alignment.

    With `widen`, a span grows over adjacent blank-aligned frames whose best non-blank class is
    its gloss (the earlier gloss claims a shared gap first).
    """
    lp = _numpy(log_probs)
    states, _ = ctc_forced_align(lp, labels, blank)
    T = len(states)
    spans = []
    for i in range(len(labels)):
        frames = np.nonzero(states == 2 * i + 1)[0]
        spans.append([int(frames[0]), int(frames[-1]) + 1])
    if widen and spans:
        nonblank = lp.copy()
        nonblank[:, blank] = -np.inf
        best = nonblank.argmax(1)
        is_blank = states % 2 == 0
        taken = ~is_blank
        for i, g in enumerate(labels):
            s, e = spans[i]
            while s > 0 and is_blank[s - 1] and not taken[s - 1] and best[s - 1] == g:
                s -= 1
            while e < T and is_blank[e] and not taken[e] and best[e] == g:
                e += 1
            taken[s:e] = True
            spans[i] = [s, e]
    return [(s, e) for s, e in spans]
