"""CTC forced alignment speed: models.ctc_alignment (numba kernel, and the vectorised torch/numpy
path) vs two per-video Python DPs.

Inputs are PHOENIX-sized: 20-120 output steps, 3-20 glosses (random ids, a video gets at least
the steps its labels need), 1,086 classes (blank = 0), log-softmax of Gaussian logits (sd 2),
float32, fixed seed. Ours aligns padded batches of `--batch` videos in corpus order (as a job
aligning a model's outputs batch by batch gets them, padded to the longest video of the batch),
with `backend="numba"` (the default on CPU) and `backend="torch"`. The baselines align one video
at a time with the textbook Viterbi written cell by cell in Python:
- `percell`: the primary baseline, the straightforward implementation (the kind of the papers'
  public code): Python loops over steps and states reading the numpy (T, V) log-probs and
  writing numpy (T, S) score and back-pointer arrays one cell at a time;
- `list`: a tuned one: the (T, 2N+1) emissions gathered by one numpy indexing and turned into
  Python lists first, so its loops pay no numpy-scalar overhead.
Two tasks:
- `align`: the best path's states and score (`forced_align`);
- `segments`: the gloss segments with the widening rule, mapped to frames ×4 (`align_glosses`);
  the baselines widen step by step in Python, with a step's best non-blank log-prob taken by
  numpy (`list`: every step's at once; `percell`: each examined step's with its own call).
All four implementations' results are compared on every video (states, exact scores, frames).
For scale, the numba kernel also runs on batches of `--big-batch` videos (the whole set in one
call by default). The implementations are timed in turns, `--rounds` times over all videos; each
reports its median round, as videos/s of wall and of CPU time. The speed-ups use CPU time, which
the other processes on a shared machine disturb less. Prints one JSON line, with the 1-minute
load average (`os.getloadavg()[0]`) before and after.

    .venv/bin/python bench/ctc_alignment.py [--videos 256] [--batch 32] [--big-batch 256] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Callable

import numpy as np
import torch

from models.ctc_alignment import align_glosses, forced_align


def python_viterbi(lp: np.ndarray, labels: list[int], blank: int = 0) -> tuple[list[int], float]:
    """Best CTC path of one video's (T, V) log-probs through `labels`, one cell at a time, over
    Python lists of the gathered emissions."""
    ext = [blank]
    for g in labels:
        ext += [g, blank]
    rows = lp[:, ext].tolist()
    T, S = len(rows), len(ext)
    can_skip = [s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] for s in range(S)]
    prev = [-math.inf] * S
    prev[0] = rows[0][0]
    if S > 1:
        prev[1] = rows[0][1]
    back = [[0] * S]
    for t in range(1, T):
        row, cur, ptr = rows[t], [0.0] * S, [0] * S
        for s in range(S):
            best, k = prev[s], 0
            if s >= 1 and prev[s - 1] > best:
                best, k = prev[s - 1], 1
            if can_skip[s] and prev[s - 2] > best:
                best, k = prev[s - 2], 2
            cur[s] = best + row[s]
            ptr[s] = k
        back.append(ptr)
        prev = cur
    s = S - 1 if S == 1 or prev[S - 1] >= prev[S - 2] else S - 2
    score = prev[s]
    states = [0] * T
    for t in range(T - 1, -1, -1):
        states[t] = s
        s -= back[t][s]
    return states, score


def percell_viterbi(lp: np.ndarray, labels: list[int], blank: int = 0) -> tuple[list[int], float]:
    """Best CTC path of one video's (T, V) log-probs through `labels`, written the straightforward
    way: loops over steps and states, every cell read from and written to numpy arrays."""
    ext = [blank]
    for g in labels:
        ext += [g, blank]
    T, S = lp.shape[0], len(ext)
    score = np.full((T, S), -np.inf)
    back = np.zeros((T, S), dtype=np.int64)
    score[0, 0] = lp[0, ext[0]]
    if S > 1:
        score[0, 1] = lp[0, ext[1]]
    for t in range(1, T):
        for s in range(S):
            best, k = score[t - 1, s], 0
            if s >= 1 and score[t - 1, s - 1] > best:
                best, k = score[t - 1, s - 1], 1
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] and score[t - 1, s - 2] > best:
                best, k = score[t - 1, s - 2], 2
            score[t, s] = best + lp[t, ext[s]]
            back[t, s] = k
    s = S - 1 if S == 1 or score[T - 1, S - 1] >= score[T - 1, S - 2] else S - 2
    total = float(score[T - 1, s])
    states = [0] * T
    for t in range(T - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    return states, total


def widened_segments(states: list[int], labels: list[int], num_frames: int, is_best: Callable[[int, int], bool],
                     stride: int = 4) -> list[tuple[int, int]]:
    """Each gloss's run of steps in a Viterbi path, widened step by step over untaken steps where
    `is_best(t, gloss)` (the gloss is the step's best non-blank class), ×stride, clipped."""
    T = len(states)
    spans = [[T, 0] for _ in labels]
    for t, s in enumerate(states):
        if s % 2:
            i = s // 2
            spans[i][0], spans[i][1] = min(spans[i][0], t), t + 1
    taken = [s % 2 == 1 for s in states]
    for i, g in enumerate(labels):
        a, e = spans[i]
        while a > 0 and not taken[a - 1] and is_best(a - 1, g):
            a -= 1
        while e < T and not taken[e] and is_best(e, g):
            e += 1
        for t in range(a, e):
            taken[t] = True
        spans[i] = [a, e]
    return [(min(stride * a, num_frames), min(stride * e, num_frames)) for a, e in spans]


def percell_segments(lp: np.ndarray, labels: list[int], num_frames: int, stride: int = 4) -> list[tuple[int, int]]:
    """Frame segments of one video: the per-cell numpy Viterbi, each examined step's best
    non-blank log-prob by one numpy max."""
    states, _ = percell_viterbi(lp, labels)
    return widened_segments(states, labels, num_frames, lambda t, g: lp[t, g] >= lp[t, 1:].max(), stride)


def python_segments(lp: np.ndarray, labels: list[int], num_frames: int, stride: int = 4) -> list[tuple[int, int]]:
    """Frame segments of one video: the list-based Viterbi, the best non-blank log-probs as a list."""
    states, _ = python_viterbi(lp, labels)
    top = lp[:, 1:].max(1).tolist()  # best non-blank log-prob of every step (blank = 0)
    return widened_segments(states, labels, num_frames, lambda t, g: float(lp[t, g]) >= top[t], stride)


def make_videos(rng: np.random.Generator, count: int, classes: int) -> list[tuple[np.ndarray, list[int], int]]:
    """(log-probs (T, V) float32, labels, frame count) of `count` PHOENIX-sized videos."""
    videos = []
    for _ in range(count):
        labels = [int(x) for x in rng.integers(1, classes, int(rng.integers(3, 21)))]
        need = len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))
        steps = int(rng.integers(max(20, need), 121))
        logits = rng.normal(0.0, 2.0, (steps, classes)).astype(np.float32)
        lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        videos.append((lp, labels, 4 * steps - int(rng.integers(0, 4))))
    return videos


def padded_batches(videos, size: int) -> list[tuple]:
    """Consecutive groups of `size` videos as (log-probs (B, T, V), steps, labels (B, L), label
    lengths, frame counts), zero-padded."""
    batches = []
    for i in range(0, len(videos), size):
        group = videos[i : i + size]
        steps = [len(lp) for lp, _, _ in group]
        lp = torch.zeros(len(group), max(steps), group[0][0].shape[1])
        labels = torch.zeros(len(group), max(len(lab) for _, lab, _ in group), dtype=torch.long)
        for b, (v, lab, _) in enumerate(group):
            lp[b, : len(v)] = torch.from_numpy(v)
            labels[b, : len(lab)] = torch.tensor(lab)
        batches.append((lp, steps, labels, [len(lab) for _, lab, _ in group], [f for _, _, f in group]))
    return batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--big-batch", type=int, default=256)
    ap.add_argument("--classes", type=int, default=1086)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = round(os.getloadavg()[0], 2)
    videos = make_videos(np.random.default_rng(args.seed), args.videos, args.classes)

    batches, big_batches = padded_batches(videos, args.batch), padded_batches(videos, args.big_batch)

    def ours_align(backend, batches=batches):
        return [forced_align(lp, n, lab, nl, backend=backend) for lp, n, lab, nl, _ in batches]

    def ours_segments(backend, batches=batches):
        return [align_glosses(lp, n, lab, nl, f, backend=backend)[0] for lp, n, lab, nl, f in batches]

    runs = {"numba_align": lambda: ours_align("numba"),
            "numba_segments": lambda: ours_segments("numba"),
            "numba_align_big_batch": lambda: ours_align("numba", big_batches),
            "numba_segments_big_batch": lambda: ours_segments("numba", big_batches),
            "torch_align": lambda: ours_align("torch"),
            "torch_segments": lambda: ours_segments("torch"),
            "percell_align": lambda: [percell_viterbi(lp, lab) for lp, lab, _ in videos],
            "percell_segments": lambda: [percell_segments(lp, lab, f) for lp, lab, f in videos],
            "list_align": lambda: [python_viterbi(lp, lab) for lp, lab, _ in videos],
            "list_segments": lambda: [python_segments(lp, lab, f) for lp, lab, f in videos]}
    for name in ("numba_align", "numba_segments", "torch_align", "torch_segments"):
        runs[name]()  # warm-up (numba: loads the compiled kernel from its cache, or compiles it)
    results, times = {}, {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            results[name] = fn()
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    per_s = {name: {"wall": round(len(videos) / float(np.median([w for w, _ in t])), 1),
                    "cpu": round(len(videos) / float(np.median([c for _, c in t])), 1)} for name, t in times.items()}

    same_align = same_segments = True
    for k, (lp, lab, _) in enumerate(videos):
        i, b = divmod(k, args.batch)
        ib, bb = divmod(k, args.big_batch)
        want_states, want_score = results["percell_align"][k]
        for align, j in [(results["numba_align"][i], b), (results["torch_align"][i], b),
                         (results["numba_align_big_batch"][ib], bb)]:
            same_align &= align.states[j, : len(lp)].tolist() == want_states and float(align.scores[j]) == want_score
        same_align &= results["list_align"][k] == (want_states, want_score)
        want = results["percell_segments"][k]
        for frames in (results["numba_segments"][i][b], results["torch_segments"][i][b],
                       results["numba_segments_big_batch"][ib][bb]):
            same_segments &= [tuple(x) for x in frames[: len(lab)].tolist()] == want
        same_segments &= results["list_segments"][k] == want

    def speedup(ours: str, base: str, clock: str) -> dict:
        return {task: round(per_s[f"{ours}_{task}"][clock] / per_s[f"{base}_{task}"][clock], 1)
                for task in ("align", "segments")}

    print(json.dumps({
        "bench": "ctc_alignment", "videos": len(videos), "steps": "20-120", "glosses": "3-20",
        "classes": args.classes, "batch": args.batch, "big_batch": args.big_batch, "rounds": args.rounds,
        "mean_steps": round(float(np.mean([len(v[0]) for v in videos])), 1),
        "mean_glosses": round(float(np.mean([len(v[1]) for v in videos])), 1),
        "videos_per_s": per_s,
        "speedup_cpu": {"numba_vs_percell_numpy_dp": speedup("numba", "percell", "cpu"),
                        "numba_vs_list_dp": speedup("numba", "list", "cpu"),
                        "torch_vs_percell_numpy_dp": speedup("torch", "percell", "cpu"),
                        "torch_vs_list_dp": speedup("torch", "list", "cpu")},
        "speedup_wall": {"numba_vs_percell_numpy_dp": speedup("numba", "percell", "wall"),
                         "numba_vs_list_dp": speedup("numba", "list", "wall")},
        "percell_numpy_dp_ms_per_video": round(1000 / per_s["percell_align"]["cpu"], 2),
        "same_alignments": bool(same_align), "same_segments": bool(same_segments),
        "threads": torch.get_num_threads(), "load_1min": load_before, "load_1min_after": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
