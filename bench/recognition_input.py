"""The Sign2Gloss training input path on real shards: CPU per clip and padded compute.

Reads the first `--clips` training rows of a preprocessed dataset (Parquet, as the trainer's Ray
Data shard yields them) and, in turns in one run, collates them as `jobs/train_recognition.py` does:

- baseline: JPEG rows, batches in row order (the trainer before `data.cache_train` /
  `data.length_buckets`): decode + crop + resize + jitter per batch;
- cached: rows decoded once (`predecode_row`, `--cache-size` px), collated from memory;
- the padding both give: the share of computed frames that are padding, with batches of
  `--batch` clips in row order against `--buckets` batches' worth sorted by augmented length.

Prints one JSON line. CPU time is process time of one thread (cv2 and torch set to one thread).

    .venv/bin/python bench/recognition_input.py --config configs/recognition/demo_single_stream.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import time

import cv2
import numpy as np
import pyarrow.parquet as pq
import torch

from common.config import load_config
from jobs.train_recognition import RecognitionConfig
from pipelines.recognition_batches import RecognitionCollate, shard_columns
from pipelines.shards import dataset_uri, shard_uris
from pipelines.video_collate import predecode_row


def read_rows(cfg: RecognitionConfig, limit: int | None = None, split: str | None = None) -> list[dict]:
    """The first `limit` rows (None: all) of `split` (default: the training split) as the model reads them."""
    split = split or cfg.data.train_split
    rows: list[dict] = []
    for path in shard_uris(cfg.data.shards, cfg.data.dataset, split):
        rows += pq.read_table(path, columns=shard_columns(cfg.uses_keypoints())).to_pylist()
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise SystemExit(f"{dataset_uri(cfg.data.shards, cfg.data.dataset)}: no {split} rows (run scripts/demo.sh)")
    for r in rows:  # as Ray's numpy batches give them
        if r.get("keypoints") is not None:
            r["keypoints"] = np.asarray(r["keypoints"], np.float32)
    return rows[:limit]


def cpu_ms_per_clip(fn, clips: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        fn()
        best = min(best, (time.process_time() - t) * 1000 / clips)
    return round(best, 2)


def padding(batches: list[dict]) -> float:
    real = sum(int(b["frame_lengths"].sum()) for b in batches)
    computed = sum(int(b["frames"].shape[1]) * len(b["names"]) for b in batches)
    return round(1 - real / computed, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/recognition/demo_single_stream.yaml")
    ap.add_argument("--clips", type=int, default=128)
    ap.add_argument("--batch", type=int, default=None, help="clips per batch (default: the config's)")
    ap.add_argument("--buckets", type=int, default=None, help="batches per length bucket (default: the config's)")
    ap.add_argument("--cache-size", type=int, default=None, help="px (default: the config's data.cache_size)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = load_config(RecognitionConfig, args.config, [])
    batch = args.batch or cfg.train.batch_size
    buckets = args.buckets or max(2, cfg.data.length_buckets)
    cache_size = args.cache_size if args.cache_size is not None else cfg.data.cache_size
    rows = read_rows(cfg, args.clips)
    glosses = sorted({g for r in rows for g in str(r["gloss"]).split()})

    def collate(seed: int) -> RecognitionCollate:
        return RecognitionCollate(cfg.data.collate, train=True, glosses=glosses, frame_stride=cfg.data.frame_stride, generator=seed)

    def in_order(rows_: list[dict], seed: int) -> list[dict]:
        c = collate(seed)
        return [c.collate_prepared(c.prepare(rows_[i : i + batch])) for i in range(0, len(rows_), batch)]

    def bucketed(rows_: list[dict], seed: int) -> list[dict]:
        c, group, out = collate(seed), batch * buckets, []
        for i in range(0, len(rows_), group):
            out += list(c.bucketed(c.prepare(rows_[i : i + group]), batch, order_seed=i))
        return out

    t = time.process_time()
    cached = [predecode_row(r, cache_size) for r in collate(0).prepare(rows)]
    fill_ms = (time.process_time() - t) * 1000 / len(rows)
    jpeg_ms = cpu_ms_per_clip(lambda: in_order(rows, 1), len(rows), args.rounds)
    cached_ms = cpu_ms_per_clip(lambda: in_order(cached, 1), len(rows), args.rounds)
    cached_bucketed_ms = cpu_ms_per_clip(lambda: bucketed(cached, 1), len(rows), args.rounds)
    pad_order = np.mean([padding(in_order(cached, s)) for s in range(5)])
    pad_bucketed = np.mean([padding(bucketed(cached, s)) for s in range(5)])
    cache_mb = sum(r["frames"].nbytes for r in cached) / len(cached) / 2**20
    print(json.dumps({
        "bench": "recognition_input", "config": args.config, "clips": len(rows), "batch": batch, "buckets": buckets,
        "out_px": [cfg.data.collate.height, cfg.data.collate.width], "cache_size": cache_size,
        "frames_per_clip": round(float(np.mean([r["num_frames"] for r in cached])), 1),
        "baseline_jpeg_collate_cpu_ms_per_clip": jpeg_ms, "cached_collate_cpu_ms_per_clip": cached_ms,
        "cached_bucketed_collate_cpu_ms_per_clip": cached_bucketed_ms, "speedup_collate": round(jpeg_ms / cached_ms, 2),
        "cache_fill_cpu_ms_per_clip": round(fill_ms, 2), "cache_mb_per_clip": round(cache_mb, 3),
        "padding_row_order": round(float(pad_order), 4), "padding_length_buckets": round(float(pad_bucketed), 4),
        "load_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
