"""CTC forced alignment (Wei & Chen, ICCV 2023, Algorithm 1) and per-gloss frame segments, batched.

Inputs are what the recognition model returns for a padded batch: log-probabilities (B, T, V)
over output steps (torch, any device, or numpy; blank = 0 by default, pipelines/vocabulary.py),
the valid steps of every video (B,), the gloss labels padded to (B, L) and their lengths (B,).

Alignment (`forced_align`). Video b with N glosses g_0..g_{N-1} gets the blank-interleaved label
_ g_0 _ g_1 _ ... g_{N-1} _ of 2N+1 states (state 2i = a blank, 2i+1 = gloss i). Its best path
(Viterbi, in log space, float64) starts in state 0 or 1; at every step it stays, moves on one
state, or skips a blank (s-2 -> s) when state s is a gloss different from gloss s-2 (a repeated
gloss needs a blank between, so N glosses with r adjacent repeats need at least N + r steps); it
ends in state 2N or 2N-1. Ties go to staying, then moving one state, then skipping; at the end to
the final blank. Videos whose labels cannot fit their length raise ValueError naming each such
video and its lengths (`min_ctc_length` in models/ctc.py tests that beforehand).

Two implementations give the same states, scores (the same float64 sums) and segments, for
finite log-probs in the valid steps (padded steps never count); `backend` picks one ("auto":
torch for a tensor on an accelerator, else numba):
- "numba" (the default on CPU): one compiled kernel (numba, cached on disk as in models/ctc.py)
  checks, aligns, cuts and widens the videos one after the other, reading each video's (T, V)
  log-probs in place (float32 or float64, any strides; other float types are widened to float32
  first). Per video: the (steps, N+1) emissions are gathered first (all loads independent: the
  log-probs mostly come from memory, a cache line per gloss and step), then the Viterbi runs
  over two rows per step (blank states, gloss states) whose selects the compiler vectorises,
  keeping the scores of every step; the backtracking re-chooses each predecessor from them.
  No threads: a parallel loop over the videos (numba prange) was ten times slower on the shared
  2-core machine under load (docs/PERFORMANCE.md); parallelism belongs to the caller (one aligner per core).
- "torch": the gathers and the best non-blank class of every step run on the log-probs' device;
  the loop runs over steps, each step a few numpy operations over all videos and states at
  once, on one contiguous row of (B, 2L+3) slots (two -inf guards per video); the scores of
  every step are kept, and the backtracking is a loop over steps that re-chooses each video's
  predecessor with one gather of (B, 3) values.

Segments (`gloss_segments_batch`), in output steps [start, end). Gloss i's segment is the run of
steps aligned to state 2i+1. With `widen` (the paper's rule), it also takes the blank-aligned
steps next to that run whose best non-blank class is g_i, i.e. log_probs[t, g_i] equals the
maximum over the non-blank classes (ties count as g_i): in the gap of blank steps between gloss
i and gloss i+1, gloss i takes the longest run of such steps starting at the gap's first step,
then gloss i+1 the longest run of such steps ending at the gap's last step among those left
(the earlier gloss claims a gap first, which only matters when g_i == g_{i+1}); blank steps
before gloss 0 can only join gloss 0, those after the last gloss only the last gloss.

Frames (`steps_to_frames`): with the model's temporal stride s (4: S3D's four temporal halvings),
output step t covers the video frames [s*t, s*t + s); a segment of steps [a, e) becomes frames
[min(s*a, F), min(s*e, F)), F = the video's frame count (only the end can be clipped when every
step starts inside the video, which is checked).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from models.ctc import cached_njit, min_ctc_length

TEMPORAL_STRIDE = 4  # video frames per output step of the S3D-based recognition models


class Alignment(NamedTuple):
    """Best CTC path of every video of a batch."""

    states: np.ndarray  # (B, T) int64: state of every output step in 0..2N_b, -1 past the video
    scores: np.ndarray  # (B,) float64: the path's log-probability (natural log)


class _Batch(NamedTuple):
    lp: torch.Tensor  # (B, T, V) log-probs, on their own device
    steps: np.ndarray  # (B,) int64 valid output steps
    ext: np.ndarray  # (B, 2L+1) int64 blank-interleaved labels (blank past each video's labels)
    n_labels: np.ndarray  # (B,) int64
    blank: int
    emit: np.ndarray  # (B, T, 2L+1) float64: log_probs[b, t, ext[b, s]]


def _vector(x, B: int, name: str) -> np.ndarray:
    v = (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.int64).ravel()
    if len(v) != B:
        raise ValueError(f"{name} has {len(v)} entries for a batch of {B} videos")
    return v


def _label_matrix(labels, B: int) -> np.ndarray:
    """Padded labels as a (B, L) int64 array."""
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    lab = lab.astype(np.int64, copy=False)
    if lab.ndim == 1 and B == 1:
        lab = lab[None]
    if lab.ndim != 2 or lab.shape[0] != B:
        raise ValueError(f"labels must be padded to (B, L) = ({B}, L), got shape {tuple(lab.shape)}")
    return lab


def _check(T: int, V: int, steps: np.ndarray, lab: np.ndarray, n_labels: np.ndarray, blank: int) -> None:
    """Raise ValueError naming the first wrong video (or every video whose labels cannot fit)."""
    L = lab.shape[1]
    wrong = np.nonzero((steps < 0) | (steps > T))[0]
    if len(wrong):
        raise ValueError(f"video {wrong[0]}: {steps[wrong[0]]} valid output steps do not fit log_probs of {T} steps")
    wrong = np.nonzero((n_labels < 0) | (n_labels > L))[0]
    if len(wrong):
        raise ValueError(f"video {wrong[0]}: {n_labels[wrong[0]]} labels do not fit labels padded to {L}")
    valid = np.arange(L)[None, :] < n_labels[:, None]
    bad = valid & ((lab < 0) | (lab >= V) | (lab == blank))
    if bad.any():
        b, i = (int(x[0]) for x in np.nonzero(bad))
        raise ValueError(f"video {b}: label {i} is {int(lab[b, i])}, not a gloss id in 0..{V - 1} other than blank {blank}")
    need = np.maximum(min_ctc_length(torch.from_numpy(lab), torch.from_numpy(n_labels)).numpy(), 1)
    short = np.nonzero(steps < need)[0]
    if len(short):
        raise ValueError("labels cannot fit their videos: " + "; ".join(
            f"video {b}: {n_labels[b]} glosses ({need[b] - max(n_labels[b], 1)} adjacent repeats) need at least "
            f"{need[b]} output steps, got {steps[b]}" for b in short))


def _batch_inputs(lp, input_lengths, labels, label_lengths) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray, np.ndarray]:
    """((B, T, V), steps (B,), labels (B, L), label lengths (B,)) of a padded batch; shapes checked."""
    if lp.ndim != 3:
        raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(lp.shape)}")
    B = lp.shape[0]
    return tuple(lp.shape), _vector(input_lengths, B, "input_lengths"), _label_matrix(labels, B), _vector(label_lengths, B, "label_lengths")


def _prepare(log_probs, input_lengths, labels, label_lengths, blank: int) -> _Batch:
    """Check a padded batch and gather the emissions of every video's interleaved label."""
    lp = torch.as_tensor(log_probs).detach()
    (B, T, V), steps, lab_np, n_labels = _batch_inputs(lp, input_lengths, labels, label_lengths)
    _check(T, V, steps, lab_np, n_labels, blank)
    L = lab_np.shape[1]
    valid = torch.arange(L)[None, :] < torch.as_tensor(n_labels)[:, None]
    columns = torch.full((B, L + 1), blank, dtype=torch.long)  # blank, then the labels
    columns[:, 1:] = torch.where(valid, torch.from_numpy(lab_np), blank)
    emit = torch.gather(lp, 2, columns.to(lp.device)[:, None, :].expand(B, T, L + 1)).to("cpu", torch.float64)
    state_column = np.zeros(2 * L + 1, dtype=np.int64)
    state_column[1::2] = np.arange(1, L + 1)
    ext = columns.numpy()[:, state_column]
    return _Batch(lp, steps, ext, n_labels, blank, np.take(emit.numpy(), state_column, 2))


def _viterbi(batch: _Batch) -> Alignment:
    B, T, S = batch.emit.shape
    steps, last = batch.steps, 2 * batch.n_labels  # last = the final blank state
    if T == 0 or B == 0:
        return Alignment(np.full((B, T), -1, dtype=np.int64), np.zeros(B))
    # Every video gets P = S + 2 slots of one flat row per step: two guards (-inf), then states
    # 0..S-1, so that the predecessors s-1 and s-2 of every state are the previous two slots and
    # each step is four operations on contiguous (B * P,) arrays.
    P = S + 2
    M = B * P
    # Emissions time-major; -inf on the steps past each video (no path goes there, and no NaN
    # of a padded step reaches a neighbour's slots).
    flat_emit = np.full((T, B, P), -np.inf)
    flat_emit[:, :, 2:] = batch.emit.transpose(1, 0, 2)
    flat_emit[np.arange(T)[:, None] >= steps[None, :]] = -np.inf
    flat_emit = flat_emit.reshape(T, M)[:, 2:]
    ext = batch.ext
    skip = np.full((B, P), -np.inf)  # added to the s-2 -> s candidate: 0 where that move is allowed
    skip[:, 4:][(np.arange(2, S) % 2 == 1)[None, :] & (ext[:, 2:] != ext[:, :-2])] = 0.0
    skip = skip.reshape(M)[2:]
    # Row t of x holds the scores before step t (row 0: before the first step) in x[t, :M] and the
    # skip candidates built from them in x[t, M:]: the three predecessors of the state in slot p
    # are x[t, p] (stay), x[t, p - 1] (one on) and x[t, M + p] (skip).
    x = np.empty((T + 1, 2 * M))  # the loop writes x[t + 1, 2:M] and x[t, M + 2:]
    x[:, :2] = -np.inf
    x[0, :M] = -np.inf
    x[0, 2 + P * np.arange(B)] = 0.0
    stay, one, two, jump = x[:, 2:M], x[:, 1 : M - 1], x[:, : M - 2], x[:, M + 2 :]
    for t in range(T):
        cur = stay[t + 1]
        np.add(two[t], skip, out=jump[t])
        np.maximum(stay[t], one[t], out=cur)
        np.maximum(cur, jump[t], out=cur)
        np.add(cur, flat_emit[t], out=cur)

    b = np.arange(B)
    final = x[steps[:, None], (b * P + 2)[:, None] + np.arange(S)[None, :]]  # (B, S) after each video's last step
    end = np.where((last >= 1) & (final[b, np.maximum(last - 1, 0)] > final[b, last]), last - 1, last)
    scores = final[b, end]
    # Backtracking: at each step the predecessor is re-chosen among the same three stored values
    # with the forward pass's tie order (argmax takes the first of equal values); a video stays in
    # its final state over the steps past its end.
    idx = (b * P + 2 + end)[:, None] + np.array([0, -1, M])[None, :]  # (B, 3) flat positions
    inside = (np.arange(T)[:, None] < steps[None, :]).astype(np.int64)  # (T, B)
    moved = np.zeros((T, B), dtype=np.int64)  # states moved on between step t-1 and step t
    for t in range(T - 1, 0, -1):
        k = x[t].take(idx).argmax(1)
        np.multiply(k, inside[t], out=moved[t])
        idx -= moved[t][:, None]
    states = (end[None, :] - np.cumsum(moved[::-1], 0)[::-1] + moved).T  # (B, T)
    states[inside.T == 0] = -1
    return Alignment(states, scores)


# ---------------------------------------------------------------------------------------------
# The compiled path (the default on CPU): one numba kernel checks, aligns, cuts and widens every
# video of the batch, reading each video's (T, V) log-probs in place (no copy, no gather of the
# batch). Same rule, tie order and float64 sums as the vectorised path above.

def _njit(fn):
    return cached_njit(fn, "models/ctc_alignment.py")


@_njit
def _fits(n_steps, T, labels, n, V, blank):
    """What `_check` checks, for one video: True when it can be aligned."""
    if n_steps < 0 or n_steps > T or n < 0 or n > labels.shape[0]:
        return False
    need = n
    for i in range(n):
        g = labels[i]
        if g < 0 or g >= V or g == blank:
            return False
        if i >= 1 and g == labels[i - 1]:
            need += 1
    return n_steps >= max(need, 1)


@_njit
def _is_top(row, g, blank):
    """row[g] >= every non-blank class of the row (False where a NaN is involved, as comparing
    with a NaN maximum is)."""
    x = row[g]
    for c in range(blank):
        if not x >= row[c]:
            return False
    for c in range(blank + 1, row.shape[0]):
        if not x >= row[c]:
            return False
    return True


@_njit
def _align_video(lp, n_steps, labels, n, blank, cut, widen, states, segments):
    """One video: lp (T, V), its first n_steps steps, labels[:n]. Writes states[:n_steps] and,
    with `cut`, segments[:n] (widened with `widen`); returns the path's score."""
    S = 2 * n + 1
    # The emissions first, all loads independent of each other (the log-probs are mostly read
    # from memory, a cache line per gloss and step): column 0 the blank, column i + 1 gloss i.
    emit = np.empty((n_steps, n + 1))
    for t in range(n_steps):
        row = lp[t]
        emit[t, 0] = row[blank]
        for i in range(n):
            emit[t, i + 1] = row[labels[i]]
    skip = np.full(n + 1, -np.inf)  # added to gloss i's skip candidate: 0 where skipping is allowed
    for i in range(1, n):
        if labels[i] != labels[i - 1]:
            skip[i] = 0.0
    # Scores before every step: blank[t, i] of state 2i, gloss[t, i + 1] of state 2i + 1 after a
    # -inf guard. Each step is two loops of selects over contiguous rows (the compiler vectorises
    # them); the backtracking re-chooses each predecessor from the stored scores.
    blank_sc = np.full((n_steps + 1, n + 1), -np.inf)
    gloss_sc = np.full((n_steps + 1, n + 1), -np.inf)
    blank_sc[0, 0] = 0.0  # the path starts in state 0 or 1
    for t in range(n_steps):
        pb, pg, nb, ng, e = blank_sc[t], gloss_sc[t], blank_sc[t + 1], gloss_sc[t + 1], emit[t]
        eb = e[0]
        for i in range(n + 1):  # blank i: stay, or one on from gloss i - 1
            stay, one = pb[i], pg[i]
            nb[i] = (one if one > stay else stay) + eb
        for i in range(n):  # gloss i: stay, one on from blank i, or skip from gloss i - 1
            stay, one, jump = pg[i + 1], pb[i], pg[i] + skip[i]
            best = one if one > stay else stay
            ng[i + 1] = (jump if jump > best else best) + e[i + 1]
    s = S - 2 if n > 0 and gloss_sc[n_steps, n] > blank_sc[n_steps, n] else S - 1
    score = gloss_sc[n_steps, n] if s % 2 else blank_sc[n_steps, n]
    for t in range(n_steps - 1, 0, -1):  # ties as in the forward pass: stay, then one on, then skip
        states[t] = s
        i = s // 2
        if s % 2 == 0:
            if gloss_sc[t, i] > blank_sc[t, i]:
                s -= 1
        else:
            best, k = gloss_sc[t, i + 1], 0
            if blank_sc[t, i] > best:
                best, k = blank_sc[t, i], 1
            if gloss_sc[t, i] + skip[i] > best:
                k = 2
            s -= k
    states[0] = s
    if not cut:
        return score
    for t in range(n_steps):
        if states[t] % 2 == 1:
            i = states[t] // 2
            if segments[i, 0] < 0:
                segments[i, 0] = t
            segments[i, 1] = t + 1
    if widen and n > 0:
        a = segments[0, 0]  # blank steps before the first gloss can only join it
        while a > 0 and _is_top(lp[a - 1], labels[0], blank):
            a -= 1
        segments[0, 0] = a
        for i in range(n):  # the gap after gloss i: gloss i from its start, then gloss i+1 from its end
            stop = segments[i + 1, 0] if i + 1 < n else n_steps
            e = segments[i, 1]
            while e < stop and _is_top(lp[e], labels[i], blank):
                e += 1
            segments[i, 1] = e
            if i + 1 < n:
                a = segments[i + 1, 0]
                while a > e and _is_top(lp[a - 1], labels[i + 1], blank):
                    a -= 1
                segments[i + 1, 0] = a
    return score


@_njit
def _align_batch(lp, steps, labels, n_labels, blank, cut, widen, states, scores, segments, fits):
    """Every video of the batch in turn; a video that does not fit (`_fits`) is left out and
    flagged False in `fits`."""
    B, T, V = lp.shape
    for b in range(B):
        fits[b] = _fits(steps[b], T, labels[b], n_labels[b], V, blank)
        if fits[b]:
            scores[b] = _align_video(lp[b], steps[b], labels[b], n_labels[b], blank, cut, widen, states[b],
                                     segments[b])


def _host_log_probs(log_probs) -> np.ndarray:
    """The log-probs as a float32 or float64 numpy array on the host (other float types widened
    to float32, exactly), without a copy where they already are."""
    if isinstance(log_probs, torch.Tensor):
        lp = log_probs.detach()
        if lp.dtype not in (torch.float32, torch.float64):
            lp = lp.float()
        return lp.cpu().numpy()
    lp = np.asarray(log_probs)
    if lp.dtype not in (np.float32, np.float64):
        lp = lp.astype(np.float32 if lp.dtype == np.float16 else np.float64)
    return lp


def _compiled(log_probs, input_lengths, labels, label_lengths, blank: int, cut: bool,
              widen: bool) -> tuple[np.ndarray, Alignment]:
    """`forced_align` (and with `cut` the segments of `gloss_segments_batch`) by the numba kernel."""
    lp = _host_log_probs(log_probs)
    (B, T, V), steps, lab, n_labels = _batch_inputs(lp, input_lengths, labels, label_lengths)
    states = np.full((B, T), -1, dtype=np.int64)
    scores = np.zeros(B)
    segments = np.full((B, lab.shape[1], 2), -1, dtype=np.int64)
    fits = np.ones(B, dtype=np.bool_)
    _align_batch(lp, steps, lab, n_labels, blank, cut, widen, states, scores, segments, fits)
    if not fits.all():
        _check(T, V, steps, lab, n_labels, blank)
        raise AssertionError("the alignment kernel refused a batch that _check accepts")
    return segments, Alignment(states, scores)


def _use_compiled(log_probs, backend: str) -> bool:
    if backend == "auto":
        return not (isinstance(log_probs, torch.Tensor) and log_probs.device.type != "cpu")
    if backend not in ("numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    return backend == "numba"


def forced_align(log_probs, input_lengths, labels, label_lengths, blank: int = 0, *,
                 backend: str = "auto") -> Alignment:
    """Best CTC path of every video: log_probs (B, T, V), input_lengths (B,) valid output steps,
    labels (B, L) padded gloss ids, label_lengths (B,). Returns states (B, T) and scores (B,).
    `backend`: "numba" (the compiled kernel), "torch" (the vectorised path, whose gathers run on
    the log-probs' device) or "auto" (torch for a tensor on an accelerator, else numba)."""
    if _use_compiled(log_probs, backend):
        return _compiled(log_probs, input_lengths, labels, label_lengths, blank, False, False)[1]
    return _viterbi(_prepare(log_probs, input_lengths, labels, label_lengths, blank))


def _best_non_blank(lp: torch.Tensor, steps: np.ndarray, blank: int) -> np.ndarray:
    """(B, T) float64: the largest log-prob over the non-blank classes at every valid step
    (+inf past each video's steps). Each video's valid steps only: the read of (steps, V) floats
    is most of the cost of widening."""
    top = torch.full(lp.shape[:2], torch.inf, dtype=lp.dtype, device=lp.device)
    for b, n in enumerate(steps.tolist()):
        parts = [p.amax(-1) for p in (lp[b, :n, :blank], lp[b, :n, blank + 1 :]) if p.shape[-1]]
        top[b, :n] = parts[0] if len(parts) == 1 else torch.maximum(*parts)
    return top.to("cpu", torch.float64).numpy()


def _owners(batch: _Batch, states: np.ndarray, widen: bool) -> np.ndarray:
    """(B, T) int64: the gloss whose segment each step belongs to, -1 for none."""
    B, T = states.shape
    owner = np.where(states % 2 == 1, (states - 1) // 2, -1)
    if not widen or T == 0:
        return owner
    top = _best_non_blank(batch.lp, batch.steps, batch.blank)
    blank_step = (states >= 0) & (states % 2 == 0)
    S = batch.emit.shape[2]
    cell = (np.arange(B * T) * S).reshape(B, T) + np.maximum(states, 0)  # flat index into emit
    prev_gloss = batch.emit.take(np.clip(cell - 1, 0, None))  # log-prob of the gloss before a gap
    next_gloss = batch.emit.take(np.clip(cell + 1, None, B * T * S - 1))  # and of the one after
    has_prev = blank_step & (states >= 2)
    has_next = blank_step & (states < 2 * batch.n_labels[:, None])
    t = np.broadcast_to(np.arange(T), (B, T))
    # Runs of equal state (the gaps of blank steps): their first and last step, for every step.
    starts = np.ones((B, T), dtype=bool)
    starts[:, 1:] = states[:, 1:] != states[:, :-1]
    ends = np.ones((B, T), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    run_first = np.maximum.accumulate(np.where(starts, t, 0), 1)
    run_last = np.minimum.accumulate(np.where(ends, t, T)[:, ::-1], 1)[:, ::-1]
    # A step joins the previous gloss when every step from its gap's first to it matches that gloss,
    # the next gloss when every step from it to its gap's last matches the next one.
    miss_prev = np.maximum.accumulate(np.where(has_prev & (prev_gloss >= top), -1, t), 1)
    miss_next = np.minimum.accumulate(np.where(has_next & (next_gloss >= top), T, t)[:, ::-1], 1)[:, ::-1]
    to_prev = has_prev & (miss_prev < run_first)
    to_next = has_next & ~to_prev & (miss_next > run_last)
    owner[to_prev] = states[to_prev] // 2 - 1
    owner[to_next] = states[to_next] // 2
    return owner


def gloss_segments_batch(log_probs, input_lengths, labels, label_lengths, blank: int = 0,
                         widen: bool = True, *, backend: str = "auto") -> tuple[np.ndarray, Alignment]:
    """Output-step segment [start, end) of every gloss of every video (module docstring's rule).

    Same inputs as `forced_align`. Returns segments (B, L, 2) int64 (-1 past each video's labels)
    and the alignment they come from."""
    if _use_compiled(log_probs, backend):
        return _compiled(log_probs, input_lengths, labels, label_lengths, blank, True, widen)
    batch = _prepare(log_probs, input_lengths, labels, label_lengths, blank)
    align = _viterbi(batch)
    owner = _owners(batch, align.states, widen)
    B, T = owner.shape
    segments = np.full((B, batch.ext.shape[1] // 2, 2), -1, dtype=np.int64)
    # Every gloss owns one non-empty run of steps; its first step is where the owner changes to it.
    first = owner >= 0
    first[:, 1:] &= owner[:, 1:] != owner[:, :-1]
    final = owner >= 0
    final[:, :-1] &= owner[:, :-1] != owner[:, 1:]
    b, t = np.nonzero(first)
    segments[b, owner[b, t], 0] = t
    b, t = np.nonzero(final)
    segments[b, owner[b, t], 1] = t + 1
    return segments, align


def steps_to_frames(segments: np.ndarray, input_lengths, num_frames, stride: int = TEMPORAL_STRIDE) -> np.ndarray:
    """Segments in output steps (B, L, 2) -> video frames [min(stride*start, F), min(stride*end, F)).

    num_frames (B,) is each video's frame count F; -1 entries stay -1. A video with a valid step
    starting at or past its last frame (stride * (steps - 1) >= F) raises ValueError."""
    segments = np.asarray(segments, dtype=np.int64)
    B = segments.shape[0]
    steps = _vector(input_lengths, B, "input_lengths")
    frames = _vector(num_frames, B, "num_frames")
    wrong = np.nonzero((steps > 0) & (stride * (steps - 1) >= frames))[0]
    if len(wrong):
        raise ValueError("output steps past the video's frames: " + "; ".join(
            f"video {b}: {steps[b]} steps x stride {stride} need more than {stride * (steps[b] - 1)} frames, "
            f"got {frames[b]}" for b in wrong))
    return np.where(segments >= 0, np.minimum(segments * stride, frames[:, None, None]), -1)


def align_glosses(log_probs, input_lengths, labels, label_lengths, num_frames, blank: int = 0,
                  widen: bool = True, stride: int = TEMPORAL_STRIDE, *,
                  backend: str = "auto") -> tuple[np.ndarray, Alignment]:
    """Frame segment [start, end) of every gloss of every video: `gloss_segments_batch` mapped by
    `steps_to_frames`. Returns frames (B, L, 2) int64 (-1 past each video's labels) and the alignment."""
    segments, align = gloss_segments_batch(log_probs, input_lengths, labels, label_lengths, blank, widen,
                                           backend=backend)
    return steps_to_frames(segments, input_lengths, num_frames, stride), align


def ctc_forced_align(log_probs, labels: Sequence[int], blank: int = 0) -> tuple[np.ndarray, float]:
    """Best path of one video's (T, V) log-probs: the state of every step (T,) in 0..2N and the
    path's log-probability (`forced_align` with a batch of one)."""
    lp = torch.as_tensor(log_probs)
    if lp.ndim != 2:
        raise ValueError(f"log_probs must be (T, V), got shape {tuple(lp.shape)}")
    labels = [int(x) for x in labels]
    align = forced_align(lp[None], [lp.shape[0]], [labels], [len(labels)], blank)
    return align.states[0], float(align.scores[0])


def gloss_segments(log_probs, labels: Sequence[int], blank: int = 0, widen: bool = True) -> list[tuple[int, int]]:
    """Output-step span [start, end) of every gloss of one video's (T, V) log-probs."""
    lp = torch.as_tensor(log_probs)
    if lp.ndim != 2:
        raise ValueError(f"log_probs must be (T, V), got shape {tuple(lp.shape)}")
    labels = [int(x) for x in labels]
    segments, _ = gloss_segments_batch(lp[None], [lp.shape[0]], [labels], [len(labels)], blank, widen)
    return [(int(s), int(e)) for s, e in segments[0]]
