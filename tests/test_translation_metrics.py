"""BLEU-1..4 and ROUGE-L: hand-computed corpora, word vs char level, input errors."""

from __future__ import annotations

import math
import random

import pytest

from metrics.translation import bleu_scores, level_for, rouge_l, tokenize, translation_scores


def test_bleu_hand_computed_two_sentences():
    hyps = ["the cat sat on the mat", "a dog"]
    refs = ["the cat sat on a mat", "a big dog barks"]
    # Sentence 1 (6 vs 6 tokens), clipped matches / hypothesis n-grams:
    #   1-grams the×2 (ref has one "the" → 1), cat, sat, on, mat           5/6
    #   2-grams the cat, cat sat, sat on | on the, the mat miss              3/5
    #   3-grams the cat sat, cat sat on | sat on the, on the mat miss        2/4
    #   4-grams the cat sat on | cat sat on the, sat on the mat miss         1/3
    # Sentence 2 (2 vs 4 tokens): 1-grams a, dog 2/2; 2-gram "a dog" 0/1; no 3-, 4-grams.
    # Corpus: p1 = 7/8, p2 = 3/6, p3 = 2/4, p4 = 1/3; lengths 8 vs 10 → BP = exp(1 − 10/8).
    bp = math.exp(1 - 10 / 8)
    expected = {
        "bleu1": 100 * bp * (7 / 8),
        "bleu2": 100 * bp * (7 / 8 * 1 / 2) ** (1 / 2),
        "bleu3": 100 * bp * (7 / 8 * 1 / 2 * 1 / 2) ** (1 / 3),
        "bleu4": 100 * bp * (7 / 8 * 1 / 2 * 1 / 2 * 1 / 3) ** (1 / 4),
    }
    scores = bleu_scores(hyps, refs)
    assert scores == pytest.approx(expected, rel=1e-12)
    assert scores["bleu4"] == pytest.approx(40.469988526642766, rel=1e-12)


def test_bleu_floor_zero_gives_zero_for_a_missing_order():
    # the cat sat on the mat vs the cat is on the mat: p1 = 5/6, p2 = 3/5 (the cat, on the,
    # the mat), p3 = 1/4 (on the mat), p4 = 0/3; equal lengths → BP = 1.
    scores = bleu_scores(["the cat sat on the mat"], ["the cat is on the mat"])
    assert scores["bleu1"] == pytest.approx(100 * 5 / 6)
    assert scores["bleu2"] == pytest.approx(100 * math.sqrt(1 / 2))
    assert scores["bleu3"] == pytest.approx(50.0)  # (5/6 · 3/5 · 1/4)^(1/3) = (1/8)^(1/3)
    assert scores["bleu4"] == 0.0


def test_bleu_effective_order_skips_orders_without_ngrams():
    # a b c vs a b c d: p1 = p2 = p3 = 1 and the hypothesis has no 4-gram, so BLEU-4 uses orders
    # 1..3 only; BP = exp(1 − 4/3) for every order.
    scores = bleu_scores(["a b c"], ["a b c d"])
    assert scores == pytest.approx({f"bleu{n}": 100 * math.exp(1 - 4 / 3) for n in range(1, 5)})


def test_bleu_text_is_not_retokenised():
    # "mat." is one token with tokenize='none': no match against "mat ."
    assert bleu_scores(["mat."], ["mat ."])["bleu1"] == 0.0
    assert bleu_scores(["Mat"], ["mat"])["bleu1"] == 0.0  # case-sensitive


def test_rouge_l_hand_computed():
    # a b c d e vs a x c e: LCS = a c e = 3, R = 3/4, P = 3/5, β = P/R = 4/5, β² = 16/25,
    # F = (1 + β²)RP / (R + β²P) = (41/25 · 9/20) / (3/4 + 16/25 · 3/5) = (369/500) / (567/500) = 41/63.
    assert rouge_l(["a b c d e"], ["a x c e"]) == pytest.approx(100 * 41 / 63, rel=1e-10)
    # Averaged per sentence: an empty hypothesis scores 0 → (41/63 + 0) / 2.
    assert rouge_l(["a b c d e", ""], ["a x c e", "a"]) == pytest.approx(100 * 41 / 126, rel=1e-10)
    # Identical sentences: 100; ROUGE-L is not symmetric in general but is here (β = 1).
    assert rouge_l(["a b"], ["a b"]) == pytest.approx(100.0)


def test_rouge_l_empty_sentences_as_the_papers_code():
    assert rouge_l([""], [""]) == pytest.approx(100.0, rel=1e-10)  # one empty token each side
    assert rouge_l(["a"], [""]) == 0.0
    assert rouge_l(["   "], ["a b"]) == 0.0


def _lcs(x: list[str], y: list[str]) -> int:
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def test_rouge_l_matches_plain_lcs_formula():
    rng = random.Random(0)
    hyps, refs, expected = [], [], []
    for _ in range(300):
        h = [rng.choice("abcde") for _ in range(rng.randint(1, 15))]
        r = [rng.choice("abcde") for _ in range(rng.randint(1, 15))]
        lcs = _lcs(h, r)
        rec, prec = lcs / len(r), lcs / len(h)
        beta = prec / (rec + 1e-12)
        expected.append((1 + beta**2) * rec * prec / (rec + beta**2 * prec + 1e-12))
        hyps.append(" ".join(h))
        refs.append(" ".join(r))
    assert rouge_l(hyps, refs) == pytest.approx(100 * sum(expected) / len(expected), rel=1e-12)


def test_char_level_chinese():
    hyp, ref = "今天天气很好", "今天 天气 不错"
    # Characters (whitespace removed): 今天天气很好 vs 今天天气不错, 6 each → BP = 1.
    #   1-grams 今 天 天 气 match, 很 好 miss           4/6
    #   2-grams 今天 天天 天气 | 气很 很好              3/5
    #   3-grams 今天天 天天气 | 天气很 气很好            2/4
    #   4-grams 今天天气 | 天天气很 天气很好             1/3
    # ROUGE-L: LCS 今天天气 = 4, R = P = 4/6 → F = 2/3.
    assert tokenize(ref, "char") == list("今天天气不错")
    scores = translation_scores([hyp], [ref], level="char")
    assert scores == pytest.approx(
        {
            "bleu1": 100 * 4 / 6,
            "bleu2": 100 * (4 / 6 * 3 / 5) ** (1 / 2),
            "bleu3": 100 * (4 / 6 * 3 / 5 * 2 / 4) ** (1 / 3),
            "bleu4": 100 * (4 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** (1 / 4),
            "rouge": 100 * 2 / 3,
        },
        rel=1e-10,
    )
    # At word level the same text is one token against three: nothing matches.
    words = translation_scores([hyp], [ref], level="word")
    assert words["bleu1"] == 0.0 and words["rouge"] == 0.0


def test_level_for():
    assert level_for("phoenix2014t") == "word"
    assert level_for("csl-daily") == "char"
    with pytest.raises(ValueError, match="'phoenix2014'.*valid names"):
        level_for("phoenix2014")


def test_input_errors():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        translation_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty corpus"):
        bleu_scores([], [])
    with pytest.raises(ValueError, match="empty corpus"):
        rouge_l([], [])
    with pytest.raises(ValueError, match="unknown text level 'bpe'"):
        translation_scores(["a"], ["a"], level="bpe")
    with pytest.raises(TypeError, match=r"hyps\[0\] must be a string"):
        bleu_scores([["a", "b"]], ["a b"])
    with pytest.raises(TypeError, match="single string"):
        rouge_l("a b", "a b")
