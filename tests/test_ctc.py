"""CTC: loss accounting, greedy decoding, prefix beam search vs exhaustive search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.ctc import beam_search_decode, ctc_loss, greedy_decode, merge_repeats, min_ctc_length


def sequence_log_probs(log_probs: torch.Tensor, seqs: list[tuple[int, ...]]) -> torch.Tensor:
    """log P(seq | one utterance's (T, V) log-probs) for every seq, via torch's CTC."""
    T = log_probs.shape[0]
    L = max(1, max(len(s) for s in seqs))
    labels = torch.tensor([list(s) + [1] * (L - len(s)) for s in seqs])
    nll = F.ctc_loss(log_probs[:, None].expand(T, len(seqs), -1).double(), labels, torch.full((len(seqs),), T),
                     torch.tensor([len(s) for s in seqs]), blank=0, reduction="none", zero_infinity=False)
    return -nll


def exhaustive_best(log_probs: torch.Tensor) -> tuple[tuple[int, ...], float, dict]:
    T, V = log_probs.shape
    seqs = [s for n in range(T + 1) for s in itertools.product(range(1, V), repeat=n)]
    lp = sequence_log_probs(log_probs, seqs)
    best = int(lp.argmax())
    return seqs[best], float(lp[best]), dict(zip(seqs, lp.tolist()))


def random_log_probs(g: torch.Generator, B: int, T: int, V: int, scale: float = 2.0) -> torch.Tensor:
    return (torch.randn(B, T, V, generator=g, dtype=torch.float64) * scale).log_softmax(-1)


def test_min_length_and_infeasible_samples_are_counted_not_trained():
    labels = torch.tensor([[3, 3, 4], [5, 6, 1], [7, 7, 7]])
    lengths = torch.tensor([3, 2, 3])
    assert min_ctc_length(labels, lengths).tolist() == [4, 2, 5]
    g = torch.Generator().manual_seed(0)
    lp = random_log_probs(g, 3, 4, 8).float().requires_grad_()
    res = ctc_loss(lp, torch.tensor([4, 4, 4]), labels, lengths)
    assert res.infeasible.tolist() == [False, False, True]
    ref = F.ctc_loss(lp.transpose(0, 1), labels, torch.tensor([4, 4, 4]), lengths, reduction="none")
    assert torch.allclose(res.per_sample[:2], ref[:2])
    assert res.per_sample[2] == 0
    assert torch.isclose(res.loss, ref[:2].sum() / 3)
    res.loss.backward()
    assert lp.grad[2].abs().sum() == 0 and lp.grad[:2].abs().sum() > 0


def test_greedy_collapses_and_merges_like_the_papers():
    # Frames: A A _ B B _ B A  (A=3, B=4, blank=0) -> collapsed [A, B, B, A]; merged [A, B, A].
    path = [3, 3, 0, 4, 4, 0, 4, 3]
    lp = torch.full((1, 8, 5), -10.0)
    lp[0, torch.arange(8), torch.tensor(path)] = 0.0
    assert greedy_decode(lp, merge=False) == [[3, 4, 4, 3]]
    assert greedy_decode(lp) == [[3, 4, 3]]
    assert greedy_decode(lp, torch.tensor([3])) == [[3]]
    assert merge_repeats([5, 5, 7, 5]) == [5, 7, 5]


@pytest.mark.parametrize("V", [3, 4])
def test_wide_beam_equals_exhaustive_search(V):
    g = torch.Generator().manual_seed(V)
    for _ in range(6):
        T = int(torch.randint(2, 6, (1,), generator=g))
        lp = random_log_probs(g, 1, T, V)
        best, best_lp, _ = exhaustive_best(lp[0])
        seqs, scores = beam_search_decode(lp, beam_width=400, merge=False, return_scores=True)
        assert tuple(seqs[0]) == best
        assert scores[0] == pytest.approx(best_lp, abs=1e-5)


def test_beam_five_is_never_less_probable_than_greedy():
    # Plain prefix beam search can lose to greedy on flat posteriors (its beam scores undercount);
    # the exact rescoring of the final beams + the greedy sequence rules that out.
    g = torch.Generator().manual_seed(1)
    for _ in range(40):
        lp = random_log_probs(g, 1, 6, 4, scale=1.0)
        _, _, table = exhaustive_best(lp[0])
        beam = tuple(beam_search_decode(lp, beam_width=5, merge=False)[0])
        plain = tuple(beam_search_decode(lp, beam_width=5, merge=False, rescore=False)[0])
        greedy = tuple(greedy_decode(lp, merge=False)[0])
        assert table[beam] >= max(table[greedy], table[plain]) - 1e-6


def test_batched_decoding_matches_one_by_one_and_respects_lengths():
    g = torch.Generator().manual_seed(2)
    lp = random_log_probs(g, 5, 30, 40, scale=3.0).float()
    lengths = torch.tensor([30, 12, 1, 25, 0])
    batched = beam_search_decode(lp, lengths, beam_width=5)
    for b in range(5):
        assert batched[b] == beam_search_decode(lp[b : b + 1, : lengths[b]], beam_width=5)[0]
    assert batched[4] == []
    assert beam_search_decode(lp, lengths, beam_width=1, merge=False) == greedy_decode(lp, lengths, merge=False)
    with pytest.raises(ValueError, match="do not fit"):
        beam_search_decode(lp, torch.tensor([31, 1, 1, 1, 1]))


def reference_prefix_beam_search(lp: np.ndarray, K: int) -> tuple[tuple[int, ...], float]:
    """Textbook CTC prefix beam search over one (T, V) utterance, every class, dict of prefixes."""
    beams = {(): (0.0, -np.inf)}
    for t in range(lp.shape[0]):
        nxt: dict = {}

        def add(p, b, nb):
            ob, onb = nxt.get(p, (-np.inf, -np.inf))
            nxt[p] = (np.logaddexp(ob, b), np.logaddexp(onb, nb))

        for p, (b, nb) in beams.items():
            tot = np.logaddexp(b, nb)
            add(p, tot + lp[t, 0], -np.inf)
            if p:
                add(p, -np.inf, nb + lp[t, p[-1]])
            for c in range(1, lp.shape[1]):
                add(p + (c,), -np.inf, (b if p and p[-1] == c else tot) + lp[t, c])
        beams = dict(sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:K])
    best = max(beams.items(), key=lambda kv: np.logaddexp(*kv[1]))
    return best[0], float(np.logaddexp(*best[1]))


def test_plain_beam_search_matches_textbook_algorithm():
    g = torch.Generator().manual_seed(3)
    for V, K in [(4, 2), (6, 3), (12, 5)]:
        lp = random_log_probs(g, 4, 9, V, scale=1.5)
        seqs, scores = beam_search_decode(lp, beam_width=K, merge=False, rescore=False, return_scores=True)
        for b in range(4):
            ref, ref_score = reference_prefix_beam_search(lp[b].numpy(), K)
            assert tuple(seqs[b]) == ref
            assert scores[b] == pytest.approx(ref_score, abs=1e-5)  # float32 inside


def _bench_module():
    """bench/ctc_decode.py (not a package), for its PHOENIX-like posteriors."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "ctc_decode.py"
    spec = importlib.util.spec_from_file_location("bench_ctc_decode", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peaked_many_class_posteriors_match_textbook_algorithm():
    # Hundreds of classes, one or two far above the rest: the decoder's per-frame class scan
    # skips whole blocks and its extension loop stops early; neither may change the result.
    # The blank is moved to the middle and to the end too (the scan must leave it out).
    rng = np.random.default_rng(6)
    posteriors = _bench_module().posteriors
    for V, K, blank in [(300, 5, 0), (300, 3, 150), (200, 8, 199)]:
        lp = np.stack([posteriors(rng, 14, V) for _ in range(3)])
        lp[..., [0, blank]] = lp[..., [blank, 0]]
        seqs, scores = beam_search_decode(lp, beam_width=K, blank=blank, merge=False, rescore=False,
                                          return_scores=True)
        to_ref = np.arange(V)
        to_ref[[0, blank]] = to_ref[[blank, 0]]
        for b in range(3):
            ref, ref_score = reference_prefix_beam_search(lp[b][:, to_ref].astype(np.float64), K)
            assert tuple(to_ref[seqs[b]].tolist()) == ref
            assert scores[b] == pytest.approx(ref_score, abs=1e-6)


def test_same_sequences_as_pyctcdecode_on_bench_inputs():
    # pyctcdecode prunes (token_min_logp -5, beam_prune_logp -10), ours does not, but on these
    # confident posteriors both find the same sequences (the bench reports the rate on 512).
    pytest.importorskip("pyctcdecode")
    pytest.importorskip("pygtrie")
    import logging

    from pyctcdecode import build_ctcdecoder

    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    rng = np.random.default_rng(0)
    posteriors = _bench_module().posteriors
    utts = [posteriors(rng, int(rng.integers(20, 121)), 1086) for _ in range(48)]
    labels = [""] + [chr(0x4E00 + i) for i in range(1, 1086)]
    decoder = build_ctcdecoder(labels)
    to_id = {c: i for i, c in enumerate(labels)}
    theirs = [merge_repeats([to_id[c] for c in decoder.decode(u, beam_width=5)]) for u in utts]
    single = [beam_search_decode(u[None], beam_width=5)[0] for u in utts]
    padded = np.zeros((len(utts), max(len(u) for u in utts), 1086), dtype=np.float32)
    for b, u in enumerate(utts):
        padded[b, : len(u)] = u
    batched = beam_search_decode(torch.from_numpy(padded), [len(u) for u in utts], beam_width=5)
    assert single == theirs
    assert batched == theirs
    assert sum(len(s) for s in theirs) > 10 * len(utts)  # not trivially empty


def test_exact_sequence_likelihood_matches_torch_ctc():
    from models.ctc import sequence_log_likelihood

    g = torch.Generator().manual_seed(4)
    lp = random_log_probs(g, 2, 7, 5)
    seqs = [[1, 2], [3, 3], [], [4, 1, 4, 2], [2]]
    utt = [0, 1, 0, 1, 1]
    got = sequence_log_likelihood(lp, torch.tensor([7, 5]), utt, seqs)
    for i, (u, s) in enumerate(zip(utt, seqs)):
        T = 7 if u == 0 else 5
        assert got[i] == pytest.approx(float(sequence_log_probs(lp[u, :T], [tuple(s)])[0]), abs=1e-5)
