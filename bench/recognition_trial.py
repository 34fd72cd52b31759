"""Short in-process Sign2Gloss training trials: how fast a recipe learns per epoch, scored on dev.

Trains a recognition config in one process and one thread, without Ray, on the whole training
split decoded once (the trainer's `data.cache_train` replay: same augmentation, length buckets,
model, loss, clipping, Adam and schedule as `jobs/train_recognition.py`), for `--epochs` epochs
with the cosine schedule planned over them (streams start from `pretrained.*` and the KL weight
ramps in over `train.distill_warmup_epochs`, as in the trainer), then decodes dev greedily with
every head. Two recipes compared at the same epochs and seed see the same clip order. Used to
choose the demo recipes (docs/PERFORMANCE.md) before spending a 19-minute Ray run on one. Dev only:
never the test split.

Prints one JSON line per `--log-every` steps (mean loss parts, gradient norm before clipping and
share of steps clipped, CPU ms per clip) and a last line
with the dev WER per head:

    .venv/bin/python bench/recognition_trial.py --config configs/recognition/demo_two_stream.yaml \\
        --epochs 4 train.batch_size=16 model.lateral_init=kaiming
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/recognition/demo_two_stream.yaml")
    ap.add_argument("--epochs", type=float, default=4.0, help="training epochs (the cosine schedule spans them)")
    ap.add_argument("--log-every", type=int, default=100, help="steps per progress line")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value (as the training job)")
    args = ap.parse_args()

    import cv2
    import torch

    from recognition_input import read_rows  # bench/ is the script folder
    from common.config import load_config
    from jobs.train_recognition import (ONEDNN_KERNEL_CACHE, RecognitionConfig, absolute_paths, build_model, distill_factor,
                                        make_optimizer, train_step)
    from pipelines.recognition_batches import RecognitionCollate, eval_batches, train_batches
    from pipelines.shards import dataset_uri, read_manifest
    from training.evaluation import decode_split, score_heads
    from training.schedule import make_lr_scheduler
    from pipelines.video_collate import predecode_row
    from pipelines.vocabulary import GlossVocabulary

    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_KERNEL_CACHE))
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = absolute_paths(load_config(RecognitionConfig, args.config, args.overrides))
    manifest = read_manifest(cfg.data.shards, cfg.data.dataset)
    vocab = GlossVocabulary.load(f"{dataset_uri(cfg.data.shards, cfg.data.dataset)}/{manifest['vocabulary']}")
    train = [predecode_row(r, cfg.data.cache_size) for r in read_rows(cfg)]
    dev = read_rows(cfg, split=cfg.data.dev_split)
    model = build_model(cfg, vocab, fresh=True)
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = len(train) / cfg.train.batch_size
    steps = max(1, round(args.epochs * steps_per_epoch))
    scheduler = make_lr_scheduler(optimizer, lambda: steps, warmup_steps=cfg.optim.warmup_steps, schedule=cfg.optim.schedule,
                                  min_lr_ratio=cfg.optim.min_lr_ratio)
    uses_kp, cpu = cfg.uses_keypoints(), torch.device("cpu")

    def batches():
        for epoch in itertools.count():
            collate = RecognitionCollate(cfg.data.collate, train=True, glosses=vocab.glosses, generator=epoch)
            yield from train_batches(None, collate, train, batch_size=cfg.train.batch_size,
                                     length_buckets=cfg.data.length_buckets, replay=True, shuffle_seed=0, order_seed=epoch)

    sums: dict[str, float] = {}
    clips, t_cpu, t0 = 0, time.process_time(), time.time()
    model.train()
    for step, batch in enumerate(itertools.islice(batches(), steps), start=1):
        w_kl = model.config.distill_weight * distill_factor(step - 1, cfg.train.distill_warmup_epochs * steps_per_epoch)
        parts = train_step(model, model, batch, optimizer, scheduler, device=cpu, uses_keypoints=uses_kp, kl_weight=w_kl,
                           grad_clip=cfg.optim.grad_clip)  # grad_norm and clipped as the trainer's metrics
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        clips += len(batch["names"])
        if step % args.log_every == 0 or step == steps:
            n = (step - 1) % args.log_every + 1
            print(json.dumps({"step": step, "epoch": round(step * cfg.train.batch_size / len(train), 2),
                              **{k: round(v / n, 3) for k, v in sums.items()},
                              "cpu_ms_per_clip": round((time.process_time() - t_cpu) * 1000 / clips, 1),
                              "wall_s": round(time.time() - t0)}), flush=True)
            sums, clips, t_cpu = {}, 0, time.process_time()

    collate = RecognitionCollate(cfg.data.collate, train=False, glosses=vocab.glosses)
    decoded = decode_split(model, eval_batches([dev], collate, cfg.decode.batch_size), cfg.head_names(), beam_width=1,
                           device=cpu, uses_keypoints=uses_kp, vocab=vocab)
    scores = score_heads(decoded["refs"], decoded["hyps"], manifest["corpus"])
    print(json.dumps({"bench": "recognition_trial", "config": args.config, "overrides": args.overrides,
                      "epochs": args.epochs, "steps": steps, "dev_wer_greedy": {h: round(v["wer"], 1) for h, v in scores.items()},
                      "wall_s": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
