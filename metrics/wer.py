"""Word error rate over gloss tokens, aligned with NIST sclite's default costs.

Costs (sclite `wwd_WORD`, and `WER_COST_*` in the papers' public code): correct 0,
substitution 4, insertion 3, deletion 3. Unit-cost Levenshtein (jiwer) gives the same minimum
number of edits in most sentences but a different D/I/S split, and occasionally a different
total: `a b c d e` → `p q r a b` is 5 substitutions with unit costs (WER 100 %) but 3 insertions
+ 3 deletions with sclite costs (cost 18 < 20, WER 120 %).

Ties between equal-cost alignments are broken as sclite's `Network_dpalign`
(src/sclite/net_dp.c, `calculate_internal_cells`): every cell keeps the diagonal move
(correct/substitution) when it is no worse than both others, else the deletion when strictly
cheaper than the insertion, else the insertion; the path is read back from the last cell. So at
equal cost: diagonal > insertion > deletion. `get_alignment` in the papers' code
(TwoStreamNetwork/utils/metrics.py) reads the same preference off its cost matrix, so the two
agree (an older routine in the same repository, `get_wer_delsubins`, prefers deletions; we
follow sclite). Ties can change the error count: `a b c` → `d e a` costs 12 both as three
substitutions and as `I I C D D`; the diagonal preference gives 3 errors, not 4.

The DP is vectorised with numpy over a batch of sentences (padded, sorted by length) and along
the hypothesis axis of each row: vertical and diagonal terms are elementwise, and the horizontal
insertion chain D[i, j] = min_k≤j (T[k] + ins·(j − k)) is `ins·j + minimum.accumulate(T − ins·k)`.
Costs are int64, so any length works (the papers' uint8 matrix overflows past ~85 tokens).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Literal, NamedTuple

import numpy as np


class Costs(NamedTuple):
    """Edit costs of the alignment (a correct match costs 0)."""

    insertion: int
    deletion: int
    substitution: int


SCLITE_COSTS = Costs(insertion=3, deletion=3, substitution=4)
UNIT_COSTS = Costs(insertion=1, deletion=1, substitution=1)  # plain Levenshtein, as jiwer

Op = Literal["C", "S", "D", "I"]
Sentence = str | Sequence[str]

# Codes of the per-cell choice matrix; _NONE marks the origin cell (and padding in paths).
_C, _S, _D, _I, _NONE = 0, 1, 2, 3, 4
_OP_NAMES: tuple[Op, ...] = ("C", "S", "D", "I")
# Padded DP cells per batch: bounds the int8 choice matrix at ~2 MiB whatever the lengths.
_CELL_BUDGET = 1 << 21


@dataclass(frozen=True)
class Alignment:
    """One sentence's sclite alignment: `ops` in order, one of C(orrect), S, D, I per step."""

    ref: tuple[str, ...]
    hyp: tuple[str, ...]
    ops: tuple[Op, ...]

    @property
    def correct(self) -> int:
        return self.ops.count("C")

    @property
    def substitutions(self) -> int:
        return self.ops.count("S")

    @property
    def deletions(self) -> int:
        return self.ops.count("D")

    @property
    def insertions(self) -> int:
        return self.ops.count("I")

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def cost(self, costs: Costs = SCLITE_COSTS) -> int:
        """Total cost of the alignment under `costs` (sclite's by default)."""
        return (
            costs.substitution * self.substitutions
            + costs.deletion * self.deletions
            + costs.insertion * self.insertions
        )

    def pairs(self) -> list[tuple[str | None, str | None, Op]]:
        """(ref token or None, hyp token or None, op) per step."""
        out: list[tuple[str | None, str | None, Op]] = []
        r = h = 0
        for op in self.ops:
            ref_tok = self.ref[r] if op in ("C", "S", "D") else None
            hyp_tok = self.hyp[h] if op in ("C", "S", "I") else None
            r += ref_tok is not None
            h += hyp_tok is not None
            out.append((ref_tok, hyp_tok, op))
        return out

    def pretty(self) -> str:
        """Three aligned lines as in sclite's `pralign` report: REF, HYP (`***` for gaps), EVAL."""
        cols = []
        for ref_tok, hyp_tok, op in self.pairs():
            r, h = ref_tok or "***", hyp_tok or "***"
            w = max(len(r), len(h))
            cols.append((r.ljust(w), h.ljust(w), ("" if op == "C" else op).ljust(w)))
        lines = ("REF:  ", "HYP:  ", "EVAL: ")
        return "\n".join((head + " ".join(c[k] for c in cols)).rstrip() for k, head in enumerate(lines))


@dataclass(frozen=True)
class WerResult:
    """Corpus WER: `wer` in percent = 100 · (S + D + I) / ref_tokens; counts summed over sentences."""

    wer: float
    substitutions: int
    deletions: int
    insertions: int
    ref_tokens: int
    num_sentences: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def correct(self) -> int:
        return self.ref_tokens - self.substitutions - self.deletions

    def __str__(self) -> str:
        return (
            f"WER {self.wer:.2f}% (S={self.substitutions} D={self.deletions} I={self.insertions}"
            f" / N={self.ref_tokens}, {self.num_sentences} sentences)"
        )


def align(ref: Sentence, hyp: Sentence, costs: Costs = SCLITE_COSTS) -> Alignment:
    """sclite alignment of one hypothesis against its reference (strings are split on whitespace)."""
    return align_corpus([ref], [hyp], costs)[0]


def align_corpus(
    refs: Sequence[Sentence], hyps: Sequence[Sentence], costs: Costs = SCLITE_COSTS
) -> list[Alignment]:
    """Per-sentence sclite alignments of a corpus, batched (same result as `align` per pair)."""
    ref_toks, hyp_toks = _check_corpus(refs, hyps, costs, "align_corpus")
    _, paths = _align_all(ref_toks, hyp_toks, costs, keep_paths=True)
    return [Alignment(tuple(r), tuple(h), p) for r, h, p in zip(ref_toks, hyp_toks, paths)]


def corpus_wer(
    refs: Sequence[Sentence], hyps: Sequence[Sentence], costs: Costs = SCLITE_COSTS
) -> WerResult:
    """Corpus-level WER (percent) with sclite costs: Σ errors / Σ reference tokens.

    Each sentence is a token sequence or a string (split on whitespace). Empty references are
    allowed (their hypothesis tokens count as insertions) but the corpus needs at least one
    reference token. `costs` only changes which alignment is chosen; every error counts 1.
    """
    ref_toks, hyp_toks = _check_corpus(refs, hyps, costs, "corpus_wer")
    ref_tokens = sum(len(r) for r in ref_toks)
    if ref_tokens == 0:
        raise ValueError(
            f"corpus_wer: the {len(ref_toks)} reference sentence(s) hold no tokens, so WER is undefined"
        )
    counts, _ = _align_all(ref_toks, hyp_toks, costs, keep_paths=False)
    s, d, i = (int(counts[:, code].sum()) for code in (_S, _D, _I))
    return WerResult(
        wer=100.0 * (s + d + i) / ref_tokens,
        substitutions=s,
        deletions=d,
        insertions=i,
        ref_tokens=ref_tokens,
        num_sentences=len(ref_toks),
    )


# --------------------------------------------------------------------------------------------
# Implementation


def _as_tokens(sentence: object, side: str, index: int) -> list[str]:
    if isinstance(sentence, str):
        return sentence.split()
    if isinstance(sentence, (bytes, bytearray)) or not isinstance(sentence, Iterable):
        raise TypeError(
            f"{side}[{index}]: expected a string or a sequence of tokens, got {type(sentence).__name__}"
        )
    return list(sentence)


def _check_corpus(
    refs: Sequence[Sentence], hyps: Sequence[Sentence], costs: Costs, fn: str
) -> tuple[list[list[str]], list[list[str]]]:
    if not isinstance(costs, Costs) or not all(isinstance(c, int) and c > 0 for c in costs):
        raise ValueError(f"{fn}: costs must be a Costs of positive integers, got {costs!r}")
    for name, value in (("refs", refs), ("hyps", hyps)):
        if isinstance(value, str):
            raise TypeError(f"{fn}: {name} must be a list of sentences, got a single string")
    if len(refs) != len(hyps):
        raise ValueError(f"{fn}: {len(refs)} reference sentences but {len(hyps)} hypotheses")
    ref_toks = [_as_tokens(s, "refs", k) for k, s in enumerate(refs)]
    hyp_toks = [_as_tokens(s, "hyps", k) for k, s in enumerate(hyps)]
    return ref_toks, hyp_toks


def _align_all(
    refs: list[list[str]], hyps: list[list[str]], costs: Costs, keep_paths: bool
) -> tuple[np.ndarray, list[tuple[Op, ...]]]:
    """Op counts (B, 4) indexed by code, and the op sequences when `keep_paths`."""
    ref_flat, hyp_flat = list(chain.from_iterable(refs)), list(chain.from_iterable(hyps))
    vocab = {tok: k for k, tok in enumerate(dict.fromkeys(ref_flat + hyp_flat))}
    ref_ids = np.fromiter(map(vocab.__getitem__, ref_flat), dtype=np.int64, count=len(ref_flat))
    hyp_ids = np.fromiter(map(vocab.__getitem__, hyp_flat), dtype=np.int64, count=len(hyp_flat))
    n = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    m = np.fromiter(map(len, hyps), dtype=np.int64, count=len(hyps))
    counts = np.zeros((len(refs), 4), dtype=np.int64)
    paths: list[tuple[Op, ...]] = [()] * len(refs)
    for idx in _batches(n, m):
        nb, mb = n[idx], m[idx]
        ref = _pad(ref_ids, n, idx, fill=-1)
        hyp = _pad(hyp_ids, m, idx, fill=-2)  # distinct fills never match
        path = _backtrace(_choices(ref, hyp, costs), nb, mb)
        for code in range(4):
            counts[idx, code] = (path == code).sum(axis=0)
        if keep_paths:
            for col, k in enumerate(idx):
                ops = path[:, col]
                paths[k] = tuple(_OP_NAMES[c] for c in ops[ops != _NONE][::-1])
    return counts, paths


def _batches(n: np.ndarray, m: np.ndarray) -> list[np.ndarray]:
    """Sentence indices grouped by length so each padded batch stays within _CELL_BUDGET cells."""
    order = np.argsort(np.maximum(n, m), kind="stable")
    batches: list[np.ndarray] = []
    current: list[int] = []
    rows = cols = 0
    for k in order.tolist():
        r, c = max(rows, int(n[k]) + 1), max(cols, int(m[k]) + 1)
        if current and (len(current) + 1) * r * c > _CELL_BUDGET:
            batches.append(np.array(current))
            current, r, c = [], int(n[k]) + 1, int(m[k]) + 1
        current.append(k)
        rows, cols = r, c
    if current:
        batches.append(np.array(current))
    return batches


def _pad(flat: np.ndarray, lengths: np.ndarray, idx: np.ndarray, fill: int) -> np.ndarray:
    """Rows `idx` of the ragged corpus `flat` (sentence lengths `lengths`) as a padded (B, max) array."""
    starts = np.cumsum(lengths) - lengths
    width = int(lengths[idx].max())
    pos = np.arange(width)
    inside = pos < lengths[idx, None]
    gather = np.where(inside, starts[idx, None] + pos, 0)
    return np.where(inside, flat[gather] if len(flat) else fill, fill)


def _choices(ref: np.ndarray, hyp: np.ndarray, costs: Costs) -> np.ndarray:
    """sclite's move per DP cell for padded ids ref (B, N), hyp (B, M): int8 (B, N+1, M+1).

    Cell (i, j) aligns ref[:i] with hyp[:j]. Padded cells hold values nobody reads: every cell
    depends only on cells above/left of it.
    """
    b, n = ref.shape
    m = hyp.shape[1]
    choice = np.empty((b, n + 1, m + 1), dtype=np.int8)
    choice[:, 0, :] = _I
    choice[:, :, 0] = _D
    choice[:, 0, 0] = _NONE
    ins, dele, sub = costs
    ins_ramp = ins * np.arange(m + 1, dtype=np.int64)
    prev = np.broadcast_to(ins_ramp, (b, m + 1))  # row 0: insertions only
    best = np.empty((b, m + 1), dtype=np.int64)  # min(diagonal, vertical) per cell
    for i in range(1, n + 1):
        match = hyp == ref[:, i - 1 : i]
        diag = prev[:, :-1] + np.where(match, 0, sub)
        best[:, 0] = dele * i
        np.minimum(diag, prev[:, 1:] + dele, out=best[:, 1:])
        cur = np.minimum.accumulate(best - ins_ramp, axis=1) + ins_ramp
        take_diag = diag == cur[:, 1:]
        take_ins = cur[:, :-1] + ins == cur[:, 1:]
        choice[:, i, 1:] = np.where(take_diag, np.where(match, _C, _S), np.where(take_ins, _I, _D))
        prev = cur
    return choice


def _backtrace(choice: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Op codes along every sentence's path from its last cell back: int8 (steps, B), _NONE-padded."""
    b = len(n)
    i, j = n.copy(), m.copy()
    rows = np.arange(b)
    steps = int((n + m).max()) if b else 0
    path = np.full((steps, b), _NONE, dtype=np.int8)
    for s in range(steps):
        op = choice[rows, i, j]
        path[s] = op
        i -= (op <= _D).astype(np.int64)  # C, S, D consume a reference token
        j -= ((op <= _S) | (op == _I)).astype(np.int64)  # C, S, I consume a hypothesis token
    return path
