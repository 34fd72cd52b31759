"""CTC beam search speed: models.ctc.beam_search_decode vs pyctcdecode, same inputs, same run.

Inputs are PHOENIX-sized: 20-120 output steps, 1,086 classes (blank = 0), posteriors shaped like
a trained CSLR model's (a random gloss sequence aligned over the steps, mostly blank, the aligned
class ~8 nats above Gaussian noise). Both decoders run with beam width 5 on one thread;
pyctcdecode with its default pruning (token_min_logp -5, beam_prune_logp -10), ours exact (see
models/ctc.py). Ours decodes batches of similar length (`--batch`), and one utterance at a time.
The three are timed in turns, `--rounds` times over all utterances (the machine's load drifts
less within a round than between separate runs); each reports its median round, in wall and CPU
milliseconds per utterance. The speed-ups use CPU time, which the other processes on a shared
machine disturb far less than wall time. `first_call_s` is ours' first call in this process:
numba compiling the decoder, or loading it from its cache (see models/ctc.py).
Prints one JSON line. Needs `pip install --no-deps pyctcdecode pygtrie` (its metadata pins
numpy<2; it runs fine on numpy 2 without a language model).

    .venv/bin/python bench/ctc_decode.py [--utterances 512] [--batch 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import numpy as np
import torch

from models.ctc import beam_search_decode, merge_repeats


def posteriors(rng: np.random.Generator, steps: int, classes: int) -> np.ndarray:
    """(steps, classes) log-probs of a confident model emitting a random gloss sequence."""
    aligned = np.where(rng.random(steps) < 0.4, rng.integers(3, classes, steps), 0)
    logits = rng.normal(0.0, 1.0, (steps, classes))
    logits[np.arange(steps), aligned] += 8.0
    logits[np.arange(steps), rng.integers(3, classes, steps)] += 4.0  # a plausible runner-up
    logits -= logits.max(1, keepdims=True)
    return (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utterances", type=int, default=512)
    ap.add_argument("--classes", type=int, default=1086)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the decoders themselves are single-threaded)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    from pyctcdecode import build_ctcdecoder

    load_before = round(os.getloadavg()[0], 2)
    rng = np.random.default_rng(args.seed)
    utts = [posteriors(rng, int(rng.integers(20, 121)), args.classes) for _ in range(args.utterances)]
    labels = [""] + [chr(0x4E00 + i) for i in range(1, args.classes)]  # one character per gloss id
    to_id = {c: i for i, c in enumerate(labels)}
    decoder = build_ctcdecoder(labels)

    # Batches of similar length (as an evaluation job decoding a whole split would form them).
    by_length = sorted(range(len(utts)), key=lambda i: len(utts[i]))
    batches = []
    for i in range(0, len(utts), args.batch):
        idx = by_length[i : i + args.batch]
        padded = np.zeros((len(idx), max(len(utts[j]) for j in idx), args.classes), dtype=np.float32)
        for b, j in enumerate(idx):
            padded[b, : len(utts[j])] = utts[j]
        batches.append((idx, padded, np.array([len(utts[j]) for j in idx])))

    w0, c0 = time.perf_counter(), time.process_time()
    beam_search_decode(utts[0][None], beam_width=args.beam)
    first_call = {"wall": round(time.perf_counter() - w0, 3), "cpu": round(time.process_time() - c0, 3)}

    def ours_batched() -> list[list[int]]:
        out: list = [None] * len(utts)
        for idx, padded, lengths in batches:
            for j, seq in zip(idx, beam_search_decode(padded, lengths, beam_width=args.beam)):
                out[j] = seq
        return out

    def ours_single() -> list[list[int]]:
        return [beam_search_decode(u[None], beam_width=args.beam)[0] for u in utts]

    def theirs() -> list[list[int]]:
        return [merge_repeats([to_id[c] for c in decoder.decode(u, beam_width=args.beam)]) for u in utts]

    runs = {"pyctcdecode": theirs, "ours_batched": ours_batched, "ours_single": ours_single}
    results, times = {}, {name: [] for name in runs}
    for u in utts[:5]:  # warm-up
        decoder.decode(u, beam_width=args.beam)
    for _ in range(args.rounds):
        for name, fn in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            results[name] = fn()
            times[name].append(((time.perf_counter() - w0) * 1000 / len(utts), (time.process_time() - c0) * 1000 / len(utts)))
    ms = {name: {"wall": round(float(np.median([w for w, _ in t])), 3), "cpu": round(float(np.median([c for _, c in t])), 3)}
          for name, t in times.items()}
    ref = results["pyctcdecode"]
    print(json.dumps({
        "bench": "ctc_decode", "utterances": len(utts), "steps": "20-120", "classes": args.classes, "beam": args.beam,
        "rounds": args.rounds, "pyctcdecode_ms_per_utt": ms["pyctcdecode"],
        "ours_batched_ms_per_utt": ms["ours_batched"], "batch": args.batch,
        "ours_single_ms_per_utt": ms["ours_single"],
        "speedup_batched_cpu": round(ms["pyctcdecode"]["cpu"] / ms["ours_batched"]["cpu"], 1),
        "speedup_single_cpu": round(ms["pyctcdecode"]["cpu"] / ms["ours_single"]["cpu"], 1),
        "speedup_batched_wall": round(ms["pyctcdecode"]["wall"] / ms["ours_batched"]["wall"], 1),
        "speedup_single_wall": round(ms["pyctcdecode"]["wall"] / ms["ours_single"]["wall"], 1),
        "exact_match_with_pyctcdecode": round(float(np.mean([a == b for a, b in zip(results["ours_batched"], ref)])), 4),
        "batched_equals_single": results["ours_batched"] == results["ours_single"],
        "first_call_s": first_call, "threads": torch.get_num_threads(),
        "load_1min_before": load_before, "load_1min_after": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
