"""CPU time of a Sign2Gloss training step on real clips of many lengths, as the trainer runs it.

Reads the first `--clips` training rows of the demo shards, decodes them once (the trainer's
`data.cache_train`), and trains `--steps` steps of length-bucketed, augmented batches (forward,
CTC loss, backward, gradient clipping, Adam, scheduler) with one thread, twice, each in a fresh
process (oneDNN reads its settings once per process):

- baseline: oneDNN's default kernel cache (1,024 primitives) and PyTorch's per-parameter Adam
  loop on CPU (the trainer before 2026-12-01 evening);
- trainer: `ONEDNN_PRIMITIVE_CACHE_CAPACITY` = `jobs.train_recognition.ONEDNN_KERNEL_CACHE` and
  `Adam(foreach=True)`, as `train_loop_per_worker` sets them.

Fixed-shape micro-benchmarks (bench/cslr_model.py) miss the difference: it comes from the clip
lengths changing from batch to batch. Prints one JSON line with both CPU ms per clip.

    .venv/bin/python bench/recognition_step.py [--config configs/recognition/demo_single_stream.yaml]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> None:
    if args.child == "trainer":
        from jobs.train_recognition import ONEDNN_KERNEL_CACHE

        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(ONEDNN_KERNEL_CACHE)
    import cv2
    import torch

    from recognition_input import read_rows  # bench/ is the script folder
    from common.config import load_config
    from jobs.train_recognition import RecognitionConfig, train_step
    from models.two_stream import TwoStreamSLR
    from training.schedule import make_lr_scheduler
    from pipelines.recognition_batches import RecognitionCollate, train_batches
    from pipelines.video_collate import predecode_row
    from pipelines.vocabulary import GlossVocabulary

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = load_config(RecognitionConfig, args.config, [])
    rows = [predecode_row(r, cfg.data.cache_size) for r in read_rows(cfg, args.clips)]
    vocab = GlossVocabulary(sorted({g for r in rows for g in str(r["gloss"]).split()}))
    torch.manual_seed(0)
    model = TwoStreamSLR(cfg.model_config_for(len(vocab)))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay,
                                 foreach=args.child == "trainer")
    scheduler = make_lr_scheduler(optimizer, lambda: args.steps, warmup_steps=cfg.optim.warmup_steps, schedule=cfg.optim.schedule,
                                  min_lr_ratio=cfg.optim.min_lr_ratio)
    uses_kp = cfg.uses_keypoints()

    def batches():  # the trainer's epochs replayed from its decoded cache; collated outside the timing
        for epoch in itertools.count():
            collate = RecognitionCollate(cfg.data.collate, train=True, glosses=vocab.glosses, generator=epoch)
            yield from train_batches(None, collate, rows, batch_size=cfg.train.batch_size, length_buckets=cfg.data.length_buckets,
                                     replay=True, shuffle_seed=0, order_seed=epoch)

    cpu, clips, lengths = 0.0, 0, set()
    for k, batch in zip(range(args.steps), batches()):
        t = time.process_time()
        train_step(model, model, batch, optimizer, scheduler, device=torch.device("cpu"), uses_keypoints=uses_kp,
                   kl_weight=model.config.distill_weight, grad_clip=cfg.optim.grad_clip)
        if k >= args.warmup:
            cpu += time.process_time() - t
            clips += len(batch["names"])
        lengths.add(tuple(batch["frames"].shape[:2]))
    print(json.dumps({"cpu_ms_per_clip": round(cpu * 1000 / clips, 1), "clips": clips, "batch_shapes": len(lengths)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/recognition/demo_single_stream.yaml")
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=20, help="steps left out of the timing")
    ap.add_argument("--child", choices=["baseline", "trainer"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    result = {"bench": "recognition_step", "config": args.config, "steps": args.steps, "warmup_steps": args.warmup}
    for mode in ("baseline", "trainer"):
        env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
        cmd = [sys.executable, __file__, "--config", args.config, "--clips", str(args.clips), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--child", mode]
        out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])
        result[f"{mode}_cpu_ms_per_clip"] = out["cpu_ms_per_clip"]
        result["batch_shapes"] = out["batch_shapes"]
    result["speedup"] = round(result["baseline_cpu_ms_per_clip"] / result["trainer_cpu_ms_per_clip"], 2)
    result["load_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
