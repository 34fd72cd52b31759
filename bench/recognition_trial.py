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
import math
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
    from jobs.config import load_config
    from jobs.train_recognition import (ONEDNN_KERNEL_CACHE, RecognitionCollate, RecognitionConfig, absolute_paths,
                                        decode_split, distill_factor, eval_batches, load_pretrained_backbones,
                                        load_pretrained_streams, lr_factor, make_optimizer, run_model, score_heads,
                                        train_batches)
    from models.two_stream import TwoStreamSLR
    from pipelines.shards import dataset_uri, read_manifest
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
    torch.manual_seed(cfg.train.seed)
    model = TwoStreamSLR(cfg.model_config_for(len(vocab)))
    load_pretrained_backbones(model, cfg.pretrained)
    load_pretrained_streams(model, cfg.pretrained, vocab.glosses)
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = len(train) / cfg.train.batch_size
    steps = max(1, round(args.epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps, cfg.optim))
    uses_kp, cpu = cfg.uses_keypoints(), torch.device("cpu")

    def batches():
        for epoch in itertools.count():
            collate = RecognitionCollate(cfg.data.collate, train=True, glosses=vocab.glosses, generator=epoch)
            yield from train_batches(None, collate, cfg, train, replay=True, shuffle_seed=0, order_seed=epoch)

    sums: dict[str, float] = {}
    clips, t_cpu, t0 = 0, time.process_time(), time.time()
    model.train()
    for step, batch in enumerate(itertools.islice(batches(), steps), start=1):
        out = run_model(model, batch, cpu, uses_kp)
        w_kl = model.config.distill_weight * distill_factor(step - 1, cfg.train.distill_warmup_epochs * steps_per_epoch)
        loss, parts = model.loss(out, batch["labels"], batch["label_lengths"], distill_weight=w_kl)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip or math.inf))
        parts["grad_norm"], parts["clipped"] = grad_norm, int(0 < cfg.optim.grad_clip < grad_norm)  # as the trainer's metrics
        optimizer.step()
        scheduler.step()
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
