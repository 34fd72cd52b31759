"""Sign2Text with a frozen backbone: seconds per training epoch reading cached backbone features
against running the frozen backbone on the frames at every step.

Runs the Sign2Text recipe (jobs/train_sign2text.py) twice on the same config for `--epochs` epochs
without the final evaluation: once with `data.feature_cache=true` (the cache is built first, or
found; its build time is reported apart, it is paid once per checkpoint and shards), once with
`data.feature_cache=false`. Same model, data, batches and optimizer; the per-epoch training time is
each run's `epoch_train_s` (median over its epochs; dev evaluation excluded). Prints one JSON line:

    .venv/bin/python bench/feature_cache.py --config configs/sign2text/demo.yaml --epochs 2 [key=value ...]
    {"cached_epoch_s": ..., "backbone_epoch_s": ..., "speedup": ..., "cache_build_s": ..., ...}

Both runs go to a temporary out_dir (removed at the end). Needs the demo's Sign2Gloss and
Gloss2Text runs and shards (see the config's header).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/sign2text/demo.yaml")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs per run")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value (as the training job)")
    args = ap.parse_args()

    from common.config import load_config
    from jobs.train_sign2text import Sign2TextConfig, run

    result: dict = {"config": args.config, "epochs": args.epochs, "overrides": args.overrides}
    with tempfile.TemporaryDirectory(prefix="bench_feature_cache_") as out:
        for label, cached in (("cached", "true"), ("backbone", "false")):
            cfg = load_config(Sign2TextConfig, args.config, [*args.overrides, f"out_dir={out}", f"name={label}",
                                                             f"data.feature_cache={cached}", f"train.epochs={args.epochs}",
                                                             "train.max_minutes=null", "final_eval=false"])
            summary = run(cfg)
            history = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
            result[f"{label}_epoch_s"] = statistics.median(h["epoch_train_s"] for h in history)
            result[f"{label}_clips_per_s"] = statistics.median(h["train_clips_per_s"] for h in history)
            result[f"{label}_dev_bleu4"] = history[-1]["dev_bleu4"]
            if cached == "true":
                cache = summary["feature_cache"]
                result.update(cache_build_s=cache["seconds"], cache_computed=cache["computed"], cache_dir=cache["dir"])
    result["speedup"] = result["backbone_epoch_s"] / max(1e-9, result["cached_epoch_s"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
