"""CTC forced alignment: the batched Viterbi, widening and frame mapping against plain per-cell
references written here, brute force on tiny cases, hand-computed cases and error messages."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from models.ctc_alignment import (align_glosses, ctc_forced_align, forced_align, gloss_segments,
                                  gloss_segments_batch, steps_to_frames)


# --- plain references: one cell at a time, Python lists and floats --------------------------------

def reference_align(lp: list[list[float]], labels: list[int], blank: int = 0) -> tuple[list[int], float]:
    """Viterbi over _ g1 _ g2 ... _ one cell at a time; ties: stay, then s-1, then s-2; end in
    the final blank on ties."""
    ext = [blank]
    for g in labels:
        ext += [g, blank]
    T, S = len(lp), len(ext)
    score = [[-math.inf] * S for _ in range(T)]
    back = [[0] * S for _ in range(T)]
    for s in range(min(2, S)):
        score[0][s] = lp[0][ext[s]]
    for t in range(1, T):
        for s in range(S):
            best, k = score[t - 1][s], 0
            if s >= 1 and score[t - 1][s - 1] > best:
                best, k = score[t - 1][s - 1], 1
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] and score[t - 1][s - 2] > best:
                best, k = score[t - 1][s - 2], 2
            score[t][s] = best + lp[t][ext[s]]
            back[t][s] = k
    s = S - 1 if S == 1 or score[T - 1][S - 1] >= score[T - 1][S - 2] else S - 2
    total = score[T - 1][s]
    states = [s]
    for t in range(T - 1, 0, -1):
        s -= back[t][s]
        states.append(s)
    return states[::-1], total


def reference_segments(lp: list[list[float]], labels: list[int], states: list[int], widen: bool,
                       blank: int = 0) -> list[tuple[int, int]]:
    """Each gloss's run of steps; widened one step at a time, gloss by gloss, left then right."""
    T = len(states)
    spans = []
    for i in range(len(labels)):
        steps = [t for t in range(T) if states[t] == 2 * i + 1]
        spans.append([steps[0], steps[-1] + 1])
    if widen:
        top = [max(v for c, v in enumerate(row) if c != blank) for row in lp]
        taken = [s % 2 == 1 for s in states]
        for i, g in enumerate(labels):
            s, e = spans[i]
            while s > 0 and not taken[s - 1] and lp[s - 1][g] >= top[s - 1]:
                s -= 1
            while e < T and not taken[e] and lp[e][g] >= top[e]:
                e += 1
            for t in range(s, e):
                taken[t] = True
            spans[i] = [s, e]
    return [(s, e) for s, e in spans]


def reference_frames(spans: list[tuple[int, int]], num_frames: int, stride: int = 4) -> list[tuple[int, int]]:
    out = []
    for s, e in spans:
        frames = [f for t in range(s, e) for f in range(stride * t, stride * t + stride) if f < num_frames]
        out.append((frames[0], frames[-1] + 1))
    return out


def min_steps(labels: list[int]) -> int:
    return max(1, len(labels) + sum(a == b for a, b in zip(labels, labels[1:])))


def random_batch(rng: np.random.Generator):
    """A padded batch of 1-5 videos with few classes (repeated glosses are common), lengths at or
    just above the minimum, NaN in padded steps and junk in padded label slots."""
    B, V = int(rng.integers(1, 6)), int(rng.integers(3, 7))
    scale = float(rng.choice([0.5, 2.0, 6.0]))
    labels, steps = [], []
    for _ in range(B):
        n = int(rng.choice([0, 1, 1, 2, 3, 4, 6]))
        lab = [int(x) for x in rng.integers(1, V, n)]
        labels.append(lab)
        steps.append(min_steps(lab) + int(rng.choice([0, 0, 1, 2, 5])))
    T, L = max(steps) + int(rng.integers(0, 3)), max(len(x) for x in labels)
    logits = rng.normal(0.0, scale, (B, T, V))
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    padded = np.full((B, max(L, 1)), V + 5)
    for b in range(B):
        lp[b, steps[b] :] = np.nan
        padded[b, : len(labels[b])] = labels[b]
    return lp, steps, labels, padded


# --- property tests ---------------------------------------------------------------------------------

BACKENDS = ["numba", "torch"]  # the compiled kernel (default on CPU) and the vectorised numpy/torch path


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(8))
def test_batched_alignment_and_segments_equal_per_cell_reference(seed, backend):
    rng = np.random.default_rng(seed)
    widened = 0
    for _ in range(25):
        lp, steps, labels, padded = random_batch(rng)
        B, T, _ = lp.shape
        frames = [4 * (n - 1) + int(rng.integers(1, 6)) for n in steps]
        label_lengths = [len(x) for x in labels]
        align = forced_align(lp, steps, padded, label_lengths, backend=backend)
        seg_w, align_w = gloss_segments_batch(torch.from_numpy(lp), torch.tensor(steps), padded, label_lengths,
                                              backend=backend)
        seg_n, _ = gloss_segments_batch(lp, steps, padded, label_lengths, widen=False, backend=backend)
        fr, _ = align_glosses(lp, steps, padded, label_lengths, frames, backend=backend)
        assert align.states.shape == (B, T) and align.scores.shape == (B,)
        assert (align_w.states == align.states).all()
        for b in range(B):
            rows = lp[b, : steps[b]].tolist()
            states, score = reference_align(rows, labels[b])
            assert align.states[b, : steps[b]].tolist() == states
            assert (align.states[b, steps[b] :] == -1).all()
            assert align.scores[b] == pytest.approx(score, abs=1e-9)
            n = len(labels[b])
            want_w = reference_segments(rows, labels[b], states, widen=True)
            assert [tuple(x) for x in seg_w[b, :n].tolist()] == want_w
            assert [tuple(x) for x in seg_n[b, :n].tolist()] == reference_segments(rows, labels[b], states, widen=False)
            assert (seg_w[b, n:] == -1).all() and (fr[b, n:] == -1).all()
            assert [tuple(x) for x in fr[b, :n].tolist()] == reference_frames(want_w, frames[b])
            widened += want_w != reference_segments(rows, labels[b], states, widen=False)
            # one video alone, through the single-video functions
            s1, sc1 = ctc_forced_align(lp[b, : steps[b]], labels[b])
            assert s1.tolist() == states and sc1 == align.scores[b]
            assert gloss_segments(lp[b, : steps[b]], labels[b]) == want_w
    assert widened > 10  # the cases do exercise the widening


def test_repeated_glosses_at_minimum_length_alternate_with_blanks():
    # [3, 3, 3, 5, 5] needs 5 + 3 = 8 steps; at exactly 8 the only path is 3 _ 3 _ 3 5 _ 5.
    rng = np.random.default_rng(1)
    labels = [3, 3, 3, 5, 5]
    lp = torch.log_softmax(torch.from_numpy(rng.normal(0, 3, (8, 6))), -1)
    states, score = ctc_forced_align(lp, labels)
    assert states.tolist() == [1, 2, 3, 4, 5, 7, 8, 9]
    ext_ids = [3, 0, 3, 0, 3, 5, 0, 5]
    assert score == pytest.approx(float(lp[torch.arange(8), torch.tensor(ext_ids)].sum()), abs=1e-12)
    assert gloss_segments(lp, labels, widen=False) == [(0, 1), (2, 3), (4, 5), (5, 6), (7, 8)]


def test_one_gloss_covers_the_video_or_leaves_blank_ends():
    lp = torch.log(torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.7, 0.3]], dtype=torch.float64))
    states, score = ctc_forced_align(lp, [1])
    assert states.tolist() == [0, 1, 2]
    assert score == pytest.approx(math.log(0.6 * 0.9 * 0.7))
    # every blank step's best non-blank class is the gloss (the only one): it takes them all
    assert gloss_segments(lp, [1]) == [(0, 3)]
    assert gloss_segments(lp, [1], widen=False) == [(1, 2)]
    states, score = ctc_forced_align(lp[:1], [1])
    assert states.tolist() == [1] and score == pytest.approx(math.log(0.4))


def test_forced_alignment_equals_brute_force_best_path():
    g = torch.Generator().manual_seed(5)
    cases = [([1], 4, 3), ([1, 2], 5, 3), ([2, 2], 6, 3), ([1, 3, 1], 6, 4), ([3, 1, 2, 2], 7, 4), ([2, 2, 2], 5, 3)]
    for labels, T, V in cases:
        lp = (torch.randn(T, V, generator=g, dtype=torch.float64) * 2).log_softmax(-1)
        best_path, best_score = None, -np.inf
        for path in itertools.product(range(V), repeat=T):
            collapsed = [c for c, _ in itertools.groupby(path) if c != 0]
            if collapsed == labels:
                score = float(lp[torch.arange(T), torch.tensor(path)].sum())
                if score > best_score:
                    best_path, best_score = path, score
        states, score = ctc_forced_align(lp, labels)
        ext = [0] + [x for lab in labels for x in (lab, 0)]
        assert tuple(ext[s] for s in states) == best_path
        assert score == pytest.approx(best_score, abs=1e-9)


# --- hand-computed cases ----------------------------------------------------------------------------

def peaked(best: list[int], second: list[int], V: int) -> torch.Tensor:
    """(T, V) log-probs: class best[t] at -0.1, second[t] at -2.5, the rest at -9."""
    T = len(best)
    lp = torch.full((T, V), -9.0, dtype=torch.float64)
    lp[torch.arange(T), torch.tensor(second)] = -2.5
    lp[torch.arange(T), torch.tensor(best)] = -0.1
    return lp


def test_gloss_segments_widen_over_matching_blank_steps():
    # Step argmax:          _  A  A  _  _  B  _  _   (A=1, B=2); step 3's best non-blank is A,
    # steps 4 and 6 B's, step 0's B (not A: stays out), step 7's A (not B: stays out).
    lp = peaked([0, 1, 1, 0, 0, 2, 0, 0], [2, 0, 0, 1, 2, 0, 2, 1], 3)
    assert gloss_segments(lp, [1, 2], widen=False) == [(1, 3), (5, 6)]
    assert gloss_segments(lp, [1, 2]) == [(1, 4), (4, 7)]


def test_the_earlier_of_two_equal_glosses_claims_the_gap():
    # A _ _ A, the two gap steps' best non-blank class A: all of it joins the first A; the leading
    # blank step (best non-blank A) joins the first gloss, the trailing one (best B) nothing.
    lp = peaked([0, 1, 0, 0, 1, 0], [1, 0, 1, 1, 0, 2], 3)
    assert gloss_segments(lp, [1, 1], widen=False) == [(1, 2), (4, 5)]
    assert gloss_segments(lp, [1, 1]) == [(0, 4), (4, 5)]
    # With the gap's first step best B instead, A takes nothing of it and the second A the rest.
    lp = peaked([0, 1, 0, 0, 1, 0], [1, 0, 2, 1, 0, 2], 3)
    assert gloss_segments(lp, [1, 1]) == [(0, 2), (3, 5)]


def test_steps_map_to_four_frames_each_clipped_to_the_video():
    lp = peaked([0, 1, 1, 0, 0, 2, 0, 0], [2, 0, 0, 1, 2, 0, 2, 1], 3)[None]
    args = (lp, [8], [[1, 2]], [2])
    frames, _ = align_glosses(*args, num_frames=[32])
    assert frames[0].tolist() == [[4, 16], [16, 28]]  # steps [1, 4) and [4, 7)
    # a video of 3 steps, segment [1, 3): frames [4, 12) cut to the video's 9 or 10 frames
    lp3 = peaked([0, 1, 1], [1, 0, 0], 2)[None]
    for num_frames, want in [(9, [4, 9]), (10, [4, 10]), (12, [4, 12]), (13, [4, 12])]:
        assert align_glosses(lp3, [3], [[1]], [1], num_frames=[num_frames], widen=False)[0][0].tolist() == [want]
    assert align_glosses(lp3, [3], [[1]], [1], num_frames=[10])[0][0].tolist() == [[0, 10]]  # widened over step 0
    assert steps_to_frames(np.array([[[1, 3], [-1, -1]]]), [3], [30], stride=2).tolist() == [[[2, 6], [-1, -1]]]
    with pytest.raises(ValueError, match=r"video 0: 3 steps x stride 4 need more than 8 frames, got 8"):
        align_glosses(lp3, [3], [[1]], [1], num_frames=[8])


# --- errors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_labels_that_cannot_fit_name_the_video_and_lengths(backend):
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(5), (3, 6)))
    labels = [[1, 2, 0], [2, 2, 0], [1, 2, 3]]
    with pytest.raises(ValueError, match=r"video 1: 2 glosses \(1 adjacent repeats\) need at least 3 output steps, "
                                         r"got 2; video 2: 3 glosses \(0 adjacent repeats\) need at least 3 output "
                                         r"steps, got 1$"):
        forced_align(lp, [6, 2, 1], labels, [2, 2, 3], backend=backend)
    forced_align(lp, [6, 3, 3], labels, [2, 2, 3], backend=backend)  # each at its minimum length: fine
    with pytest.raises(ValueError, match="need at least 3 output steps, got 2"):
        ctc_forced_align(lp[0, :2], [2, 2])
    with pytest.raises(ValueError, match="video 0: 0 glosses .* need at least 1 output steps, got 0"):
        forced_align(lp[:1], [0], [[1]], [0], backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_name_the_video(backend):
    lp = np.log(np.full((2, 4, 3), 1 / 3))
    with pytest.raises(ValueError, match="video 1: label 0 is 0, not a gloss id in 0..2 other than blank 0"):
        forced_align(lp, [4, 4], [[1, 2], [0, 1]], [2, 2], backend=backend)
    with pytest.raises(ValueError, match="video 0: label 1 is 3"):
        forced_align(lp, [4, 4], [[1, 3], [1, 1]], [2, 2], backend=backend)
    with pytest.raises(ValueError, match="video 1: 5 valid output steps do not fit log_probs of 4 steps"):
        forced_align(lp, [4, 5], [[1], [1]], [1, 1], backend=backend)
    with pytest.raises(ValueError, match="video 0: 3 labels do not fit labels padded to 2"):
        forced_align(lp, [4, 4], [[1, 2], [1, 1]], [3, 1], backend=backend)
    with pytest.raises(ValueError, match=r"log_probs must be \(B, T, V\)"):
        forced_align(lp[0], [4], [[1]], [1], backend=backend)
    with pytest.raises(ValueError, match=r"labels must be padded to \(B, L\) = \(2, L\), got shape \(3, 1\)"):
        forced_align(lp, [4, 4], [[1], [1], [1]], [1, 1], backend=backend)
    with pytest.raises(ValueError, match="backend must be 'auto', 'numba' or 'torch', got 'cuda'"):
        forced_align(lp, [4, 4], [[1], [1]], [1, 1], backend="cuda")


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_blank_id_and_float32_torch_input(backend):
    rng = np.random.default_rng(3)
    lp = torch.log_softmax(torch.from_numpy(rng.normal(0, 2, (2, 7, 5))).float(), -1)
    swap = [4, 1, 2, 3, 0]  # class 0 <-> class 4: blank 4 with glosses as ids 1..3, 0
    a = forced_align(lp, [7, 5], [[1, 2, 2], [3, 4, 9]], [3, 2], backend=backend)
    b = forced_align(lp[..., swap], [7, 5], [[1, 2, 2], [3, 0, 9]], [3, 2], blank=4, backend=backend)
    assert (a.states == b.states).all() and (a.scores == b.scores).all()
    sa, _ = gloss_segments_batch(lp, [7, 5], [[1, 2, 2], [3, 4, 9]], [3, 2], backend=backend)
    sb, _ = gloss_segments_batch(lp[..., swap], [7, 5], [[1, 2, 2], [3, 0, 9]], [3, 2], blank=4, backend=backend)
    assert (sa == sb).all()


def test_backends_agree_on_strided_and_half_precision_inputs():
    # the compiled kernel reads strided views in place and widens bfloat16 exactly to float32
    rng = np.random.default_rng(4)
    base = torch.log_softmax(torch.from_numpy(rng.normal(0, 3, (3, 12, 8))), -1)
    args = ([12, 9, 7], [[1, 2, 2, 3], [5, 5, 0, 0], [4, 0, 0, 0]], [4, 2, 1])
    strided = base.transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided.is_contiguous()
    for lp in (strided, base.numpy()[:, :, ::-1], base.bfloat16()):
        seg_n, align_n = gloss_segments_batch(lp, *args, backend="numba")
        seg_t, align_t = gloss_segments_batch(torch.as_tensor(np.ascontiguousarray(lp)) if isinstance(lp, np.ndarray)
                                              else lp, *args, backend="torch")
        assert (align_n.states == align_t.states).all() and (align_n.scores == align_t.scores).all()
        assert (seg_n == seg_t).all()
