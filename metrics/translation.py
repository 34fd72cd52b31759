"""Translation metrics as the papers report them: corpus BLEU-1..4 and sentence-averaged ROUGE-L.

All scores are percentages (0–100).

- BLEU-n (sacrebleu): no tokenisation, `floor` smoothing with value 0 (a zero n-gram precision
  gives 0), effective order, and BLEU-n = brevity penalty × geometric mean of p1..pn, i.e.
  sacrebleu's `BLEU(max_ngram_order=n)`. This is what the papers' `raw_corpus_bleu(...).scores`
  computes.
- ROUGE-L: per sentence the LCS-based F of tf-seq2seq's `rouge_l_sentence_level` (R = lcs/|ref|,
  P = lcs/|hyp|, β = P/(R + 1e-12), F = (1 + β²)·R·P / (R + β²·P + 1e-12)), averaged over
  sentences. As in the papers' code an empty hypothesis scores 0 and an empty hypothesis against
  an empty reference scores 1 (their split on " " turns both into one empty token).
- Levels: "word" splits on whitespace (PHOENIX-2014T German is already tokenised); "char"
  removes all whitespace and scores characters (CSL-Daily Chinese), on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
from rapidfuzz.distance import LCSseq
from sacrebleu.metrics import BLEU

Level = Literal["word", "char"]
_LEVELS: tuple[str, ...] = get_args(Level)
_MAX_ORDER = 4

# Text scoring level per corpus name (`CorpusConfig.name`).
_CORPUS_LEVEL: dict[str, Level] = {"phoenix2014t": "word", "csl-daily": "char", "synthetic": "word"}


def level_for(corpus_name: str) -> Level:
    """The text level a corpus is scored at ("char" for CSL-Daily, else "word")."""
    try:
        return _CORPUS_LEVEL[corpus_name]
    except KeyError:
        valid = ", ".join(repr(k) for k in sorted(_CORPUS_LEVEL))
        raise ValueError(f"no translation scoring level for corpus {corpus_name!r}; valid names: {valid}") from None


def tokenize(text: str, level: Level) -> list[str]:
    """Scoring tokens of one sentence: whitespace-split words, or characters without whitespace."""
    if level == "word":
        return text.split()
    if level == "char":
        return list("".join(text.split()))
    raise ValueError(f"unknown text level {level!r}; valid: {', '.join(map(repr, _LEVELS))}")


def bleu_scores(hyps: Sequence[str], refs: Sequence[str], level: Level = "word") -> dict[str, float]:
    """Corpus BLEU-1..4 in percent: {"bleu1": .., "bleu2": .., "bleu3": .., "bleu4": ..}."""
    _check(hyps, refs, "bleu_scores", level)
    hyp_text = [" ".join(tokenize(h, level)) for h in hyps]
    ref_text = [" ".join(tokenize(r, level)) for r in refs]
    scores = {}
    for n in range(1, _MAX_ORDER + 1):
        bleu = BLEU(
            tokenize="none",
            smooth_method="floor",
            smooth_value=0.0,
            effective_order=True,
            max_ngram_order=n,
            force=True,
        )
        scores[f"bleu{n}"] = bleu.corpus_score(hyp_text, [ref_text]).score
    return scores


def rouge_l(hyps: Sequence[str], refs: Sequence[str], level: Level = "word") -> float:
    """ROUGE-L F in percent, computed per sentence and averaged over the corpus."""
    _check(hyps, refs, "rouge_l", level)
    per_sentence = [_rouge_l_sentence(tokenize(h, level), tokenize(r, level)) for h, r in zip(hyps, refs)]
    return 100.0 * float(np.mean(per_sentence))  # numpy's pairwise sum, as the papers' code


def translation_scores(hyps: Sequence[str], refs: Sequence[str], level: Level = "word") -> dict[str, float]:
    """BLEU-1..4 and ROUGE-L in percent: keys "bleu1".."bleu4" and "rouge"."""
    return {**bleu_scores(hyps, refs, level), "rouge": rouge_l(hyps, refs, level)}


def _rouge_l_sentence(hyp: list[str], ref: list[str]) -> float:
    if not hyp and not ref:
        return _lcs_f(1, 1, 1)  # the papers' code sees one empty token on each side
    if not hyp or not ref:
        return 0.0
    return _lcs_f(LCSseq.similarity(hyp, ref), len(ref), len(hyp))


def _lcs_f(lcs: int, ref_len: int, hyp_len: int) -> float:
    """tf-seq2seq `_f_p_r_lcs` (β = P/R), with its epsilons so values match bit for bit."""
    r = lcs / ref_len
    p = lcs / hyp_len
    beta = p / (r + 1e-12)
    return ((1 + beta**2) * r * p) / (r + beta**2 * p + 1e-12)


def _check(hyps: Sequence[str], refs: Sequence[str], fn: str, level: str) -> None:
    if level not in _LEVELS:
        raise ValueError(f"{fn}: unknown text level {level!r}; valid: {', '.join(map(repr, _LEVELS))}")
    for name, value in (("hyps", hyps), ("refs", refs)):
        if isinstance(value, str):
            raise TypeError(f"{fn}: {name} must be a list of sentences, got a single string")
    if len(hyps) != len(refs):
        raise ValueError(f"{fn}: {len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError(f"{fn}: empty corpus (no sentences to score)")
    for name, value in (("hyps", hyps), ("refs", refs)):
        for k, sentence in enumerate(value):
            if not isinstance(sentence, str):
                raise TypeError(f"{fn}: {name}[{k}] must be a string, got {type(sentence).__name__}")
