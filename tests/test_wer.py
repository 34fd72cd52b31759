"""WER with sclite costs: hand-checked alignments, parity with a pure-Python DP, jiwer, rapidfuzz."""

from __future__ import annotations

import random

import jiwer
import pytest
from rapidfuzz.distance import Levenshtein

from metrics import wer as wer_module
from metrics.wer import SCLITE_COSTS, UNIT_COSTS, Costs, align, align_corpus, corpus_wer


def reference_align(ref: list[str], hyp: list[str], costs: Costs = SCLITE_COSTS) -> tuple[list[str], int]:
    """Plain O(nm) DP; backtrace with sclite's preference at equal cost: diagonal, insertion, deletion."""
    ins, dele, sub = costs
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for j in range(1, m + 1):
        d[0][j] = j * ins
    for i in range(1, n + 1):
        d[i][0] = i * dele
        for j in range(1, m + 1):
            diag = d[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else sub)
            d[i][j] = min(diag, d[i - 1][j] + dele, d[i][j - 1] + ins)
    ops = []
    i, j = n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else sub):
            ops.append("C" if ref[i - 1] == hyp[j - 1] else "S")
            i, j = i - 1, j - 1
        elif j and d[i][j] == d[i][j - 1] + ins:
            ops.append("I")
            j -= 1
        else:
            ops.append("D")
            i -= 1
    return ops[::-1], d[n][m]


def random_pair(rng: random.Random, vocab: int, max_len: int) -> tuple[list[str], list[str]]:
    ref = [f"G{rng.randrange(vocab)}" for _ in range(rng.randint(0, max_len))]
    hyp = []
    for tok in ref:  # hypothesis = reference with random edits, so alignments are non-trivial
        r = rng.random()
        if r < 0.15:
            continue
        hyp.append(f"G{rng.randrange(vocab)}" if r < 0.35 else tok)
        if rng.random() < 0.1:
            hyp.append(f"G{rng.randrange(vocab)}")
    if rng.random() < 0.2:
        hyp = [f"G{rng.randrange(vocab)}" for _ in range(rng.randint(0, max_len))]
    return ref, hyp


# ---------------------------------------------------------------- hand-checked alignments


def test_sclite_costs_split_errors_differently_from_jiwer():
    # ref A B, hyp B C. Unit costs: two substitutions (A→B, B→C) cost 2, the same as deleting A,
    # matching B and inserting C (1 + 0 + 1); jiwer reports S=2. sclite costs: 4 + 4 = 8 for the
    # substitutions against 3 + 0 + 3 = 6 for D, C, I, so sclite reports D=1, I=1.
    a = align("A B", "B C")
    assert a.ops == ("D", "C", "I")
    assert (a.substitutions, a.deletions, a.insertions, a.cost()) == (0, 1, 1, 6)
    out = jiwer.process_words("A B", "B C")
    assert (out.substitutions, out.deletions, out.insertions) == (2, 0, 0)
    assert a.errors == out.substitutions + out.deletions + out.insertions  # same total here


def test_sclite_costs_can_change_the_total():
    # ref a b c d e, hyp p q r a b. Unit costs: 5 substitutions (5 edits) beat I I I C C D D D
    # (6 edits), so jiwer's WER is 100 %. sclite costs, by which glosses are matched:
    #   a and b:    insert p q r (9), C C, delete c d e (9)                      = 18
    #   only a:     insert p q r (9); then b c d e vs b unmatched: 1 S + 3 D (13) = 22
    #   only b:     a vs p q r a unmatched: 1 S + 3 I (13); then delete c d e (9) = 22
    #   none:       S + D = S + I = 5, so 4S + 6(5 − S) = 30 − 2S                ≥ 20
    # So sclite takes I I I C C D D D: 6 errors over 5 reference glosses, WER 120 %.
    result = corpus_wer(["a b c d e"], ["p q r a b"])
    assert (result.substitutions, result.deletions, result.insertions) == (0, 3, 3)
    assert result.wer == pytest.approx(120.0)
    assert align("a b c d e", "p q r a b").ops == ("I", "I", "I", "C", "C", "D", "D", "D")
    assert jiwer.wer("a b c d e", "p q r a b") == pytest.approx(1.0)
    assert corpus_wer(["a b c d e"], ["p q r a b"], costs=UNIT_COSTS).wer == pytest.approx(100.0)


def test_ties_prefer_diagonal_then_insertion_then_deletion():
    # a b c vs d e a: three substitutions (12) tie with I I C D D (3+3+0+3+3 = 12); at the last
    # cell the diagonal is no worse than the deletion, so sclite keeps the substitutions: 3 errors, not 4.
    assert align("a b c", "d e a").ops == ("S", "S", "S")
    # A X vs X A: D C I and I C D both cost 6; at the last cell (X vs A) deletion and insertion
    # tie at 6 and sclite takes the insertion, so A is deleted first and re-inserted at the end.
    assert align("A X", "X A").ops == ("D", "C", "I")
    # A B vs C: S D and D S both cost 7; the last cell takes the diagonal (B→C).
    assert align("A B", "C").ops == ("D", "S")


def test_corpus_wer_sums_over_sentences():
    refs = [["A", "B", "C"], ["D"], ["E", "F"]]
    hyps = [["A", "C"], ["D", "X"], ["E", "G"]]
    # sentence 1: A C vs A B C → D(B); sentence 2: I(X); sentence 3: S(F→G). 3 errors / 6 tokens.
    result = corpus_wer(refs, hyps)
    assert (result.substitutions, result.deletions, result.insertions) == (1, 1, 1)
    assert (result.ref_tokens, result.num_sentences, result.errors, result.correct) == (6, 3, 3, 4)
    assert result.wer == pytest.approx(50.0)
    assert "WER 50.00%" in str(result)


def test_strings_are_split_on_whitespace():
    assert corpus_wer(["A  B\tC"], ["A B C"]).wer == 0.0
    assert align("A B", ["A", "B"]).ops == ("C", "C")


def test_pairs_and_pretty():
    a = align("A B C", "A X C D")
    assert a.pairs() == [("A", "A", "C"), ("B", "X", "S"), ("C", "C", "C"), (None, "D", "I")]
    assert a.pretty().splitlines() == [
        "REF:  A B C ***",
        "HYP:  A X C D",
        "EVAL:   S   I",
    ]


# ---------------------------------------------------------------- edge cases and errors


def test_empty_hypothesis_is_all_deletions():
    result = corpus_wer([["A", "B", "C"]], [[]])
    assert (result.substitutions, result.deletions, result.insertions, result.wer) == (0, 3, 0, 100.0)
    assert align("A B C", "").ops == ("D", "D", "D")


def test_empty_reference_contributes_its_insertions():
    result = corpus_wer([[], ["A", "B"]], [["X", "Y"], ["A", "B"]])
    assert (result.insertions, result.ref_tokens, result.num_sentences) == (2, 2, 2)
    assert result.wer == pytest.approx(100.0)
    assert align("", "X Y").ops == ("I", "I")
    assert align("", "").ops == ()


def test_no_reference_tokens_is_an_error():
    with pytest.raises(ValueError, match="hold no tokens"):
        corpus_wer([[], []], [["A"], []])
    with pytest.raises(ValueError, match="hold no tokens"):
        corpus_wer([], [])


def test_mismatched_lengths_name_both():
    with pytest.raises(ValueError, match="3 reference sentences but 2 hypotheses"):
        corpus_wer(["A", "B", "C"], ["A", "B"])


def test_bad_sentence_types():
    with pytest.raises(TypeError, match="single string"):
        corpus_wer("A B", "A B")
    with pytest.raises(TypeError, match=r"hyps\[1\]"):
        corpus_wer(["A", "B"], ["A", None])
    with pytest.raises(ValueError, match="positive integers"):
        corpus_wer(["A"], ["A"], costs=(3, 3, 4))


# ---------------------------------------------------------------- parity with references


def test_matches_reference_dp_on_random_corpus():
    rng = random.Random(0)
    pairs = [random_pair(rng, vocab=rng.choice([2, 3, 5, 20]), max_len=14) for _ in range(1500)]
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    for costs in (SCLITE_COSTS, UNIT_COSTS, Costs(1, 2, 2)):
        alignments = align_corpus(refs, hyps, costs)
        for (ref, hyp), a in zip(pairs, alignments):
            ops, cost = reference_align(ref, hyp, costs)
            assert list(a.ops) == ops, (ref, hyp, costs)
            assert a.cost(costs) == cost


def test_small_batches_give_the_same_alignments(monkeypatch):
    rng = random.Random(1)
    pairs = [random_pair(rng, vocab=4, max_len=rng.choice([3, 30])) for _ in range(200)]
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    whole = align_corpus(refs, hyps)
    monkeypatch.setattr(wer_module, "_CELL_BUDGET", 200)  # forces many batches, some of one sentence
    assert align_corpus(refs, hyps) == whole
    assert whole == [align(r, h) for r, h in zip(refs, hyps)]


def test_long_sequences_beyond_uint8_range():
    # Several hundred tokens: costs reach > 1000, far past the papers' uint8 matrix (255 ≈ 85 edits).
    rng = random.Random(2)
    for length in (300, 450):
        ref = [f"G{rng.randrange(30)}" for _ in range(length)]
        hyp = [t if rng.random() < 0.6 else f"G{rng.randrange(30)}" for t in ref if rng.random() > 0.1]
        hyp += [f"G{rng.randrange(30)}" for _ in range(40)]
        a = align(ref, hyp)
        ops, cost = reference_align(ref, hyp)
        assert list(a.ops) == ops
        assert a.cost() == cost > 255
        assert cost == Levenshtein.distance(ref, hyp, weights=(3, 3, 4))


def test_cost_is_optimal_per_rapidfuzz():
    rng = random.Random(3)
    pairs = [random_pair(rng, vocab=4, max_len=25) for _ in range(500)]
    for (ref, hyp), a in zip(pairs, align_corpus([p[0] for p in pairs], [p[1] for p in pairs])):
        assert a.cost() == Levenshtein.distance(ref, hyp, weights=(3, 3, 4))


def test_unit_costs_match_jiwer_totals():
    rng = random.Random(4)
    pairs = [random_pair(rng, vocab=rng.choice([3, 6, 50]), max_len=20) for _ in range(400)]
    pairs = [(r, h) for r, h in pairs if r]  # jiwer rejects empty references
    unit = align_corpus([p[0] for p in pairs], [p[1] for p in pairs], costs=UNIT_COSTS)
    sclite = align_corpus([p[0] for p in pairs], [p[1] for p in pairs])
    for (ref, hyp), u, s in zip(pairs, unit, sclite):
        out = jiwer.process_words(" ".join(ref), " ".join(hyp))
        assert u.errors == out.substitutions + out.deletions + out.insertions
        assert s.errors >= u.errors  # sclite costs never find fewer edits than the minimum
    result = corpus_wer([" ".join(p[0]) for p in pairs], [" ".join(p[1]) for p in pairs], costs=UNIT_COSTS)
    expected = jiwer.wer([" ".join(p[0]) for p in pairs], [" ".join(p[1]) for p in pairs])
    assert result.wer == pytest.approx(100 * expected)


@pytest.mark.real_data
def test_real_phoenix_dev_last_gloss_dropped(real_data_dir):
    lines = (real_data_dir / "phoenix-2014t/PHOENIX-2014-T.dev.corpus.csv").read_text().splitlines()
    header = lines[0].split("|")
    refs = [line.split("|")[header.index("orth")].split() for line in lines[1:]]
    assert len(refs) == 519 and all(refs)
    assert corpus_wer(refs, refs).wer == 0.0
    # Dropping each sentence's last gloss is exactly one deletion per sentence.
    result = corpus_wer(refs, [r[:-1] for r in refs])
    n = sum(len(r) for r in refs)
    assert (result.substitutions, result.deletions, result.insertions, result.ref_tokens) == (0, 519, 0, n)
    assert result.wer == pytest.approx(100 * 519 / n)
