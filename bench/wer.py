"""Speed of `metrics.wer.corpus_wer` (numpy, batched) against a pure-Python DP with the same costs.

Data: a PHOENIX-2014T-dev-sized corpus (519 sentences of 5–30 glosses from a 1,085-gloss
vocabulary, hypotheses ≈ 25 % WER) and 20 pairs of 300-gloss sequences. Both implementations
must give the same S/D/I counts. Prints one JSON line (seconds are the best of `--repeats`).

    .venv/bin/python bench/wer.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections.abc import Callable

import jiwer
import numpy as np

from metrics.wer import SCLITE_COSTS, corpus_wer


def python_counts(refs: list[list[str]], hyps: list[list[str]]) -> tuple[int, int, int]:
    """Baseline: textbook O(nm) DP per sentence, sclite costs and tie order; (S, D, I) totals."""
    ins, dele, sub = SCLITE_COSTS
    s_tot = d_tot = i_tot = 0
    for ref, hyp in zip(refs, hyps):
        n, m = len(ref), len(hyp)
        d = [[j * ins for j in range(m + 1)]]
        for i in range(1, n + 1):
            row = [i * dele]
            prev = d[-1]
            r = ref[i - 1]
            for j in range(1, m + 1):
                row.append(min(prev[j - 1] + (0 if r == hyp[j - 1] else sub), prev[j] + dele, row[j - 1] + ins))
            d.append(row)
        i, j = n, m
        while i or j:
            if i and j and d[i][j] == d[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else sub):
                s_tot += ref[i - 1] != hyp[j - 1]
                i, j = i - 1, j - 1
            elif j and d[i][j] == d[i][j - 1] + ins:
                i_tot += 1
                j -= 1
            else:
                d_tot += 1
                i -= 1
    return s_tot, d_tot, i_tot


def make_corpus(rng: random.Random, sentences: int, lengths: tuple[int, int], vocab: int = 1085):
    glosses = [f"GLOSS{k}" for k in range(vocab)]
    refs, hyps = [], []
    for _ in range(sentences):
        ref = [rng.choice(glosses) for _ in range(rng.randint(*lengths))]
        hyp = []
        for tok in ref:
            u = rng.random()
            if u < 0.08:
                continue  # deletion
            hyp.append(rng.choice(glosses) if u < 0.20 else tok)
            if rng.random() < 0.05:
                hyp.append(rng.choice(glosses))  # insertion
        refs.append(ref)
        hyps.append(hyp)
    return refs, hyps


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_case(refs, hyps, repeats: int, with_jiwer: bool = False) -> dict:
    t_np, res = best_of(lambda: corpus_wer(refs, hyps), repeats)
    t_py, counts = best_of(lambda: python_counts(refs, hyps), repeats)
    if (res.substitutions, res.deletions, res.insertions) != counts:
        raise SystemExit(f"mismatch: numpy {res} vs python (S, D, I) = {counts}")
    case = {
        "sentences": len(refs),
        "ref_tokens": res.ref_tokens,
        "wer": round(res.wer, 3),
        "numpy_s": round(t_np, 5),
        "python_s": round(t_py, 5),
        "speedup": round(t_py / t_np, 2),
    }
    if with_jiwer:  # a different metric (unit costs), C++ Levenshtein: context only
        ref_text, hyp_text = [" ".join(r) for r in refs], [" ".join(h) for h in hyps]
        case["jiwer_unit_cost_s"] = round(best_of(lambda: jiwer.process_words(ref_text, hyp_text), repeats)[0], 5)
    return case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    phoenix = make_corpus(rng, 519, (5, 30))
    long = make_corpus(rng, 20, (300, 300))
    corpus_wer(*phoenix)  # warm-up (imports, allocator)
    print(
        json.dumps(
            {
                "bench": "wer",
                "phoenix_dev_sized": run_case(*phoenix, args.repeats, with_jiwer=True),
                "long_300_tokens": run_case(*long, args.repeats),
                "repeats": args.repeats,
                "numpy": np.__version__,
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
