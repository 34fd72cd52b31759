"""Speed of synthetic corpus generation: videos/s and frames/s with 1 worker (the baseline) and 2.

    .venv/bin/python bench/synthesize.py [--videos-scale 2] [--demo]

Generates the tiny config at the demo's 128×128 frame size into a temporary folder, once per
worker count, and prints one JSON line. `--demo` also times the full demo config (minutes).
Timings are wall clock; the load average is reported because the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from common.config import load_config
from jobs.synthesize import SynthesizeConfig, synthesize

REPO = Path(__file__).resolve().parents[1]


def timed_run(config_path: Path, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="sb_bench_") as tmp:
        config = load_config(SynthesizeConfig, config_path, [f"out_dir={tmp}/corpus", "contact_sheet_videos=0", *overrides])
        start, cpu = time.perf_counter(), time.process_time()
        manifest = synthesize(config, progress=False)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    videos, frames = manifest["counts"]["videos"], manifest["counts"]["frames"]
    return {
        "workers": config.num_workers,
        "videos": videos,
        "frames": frames,
        "seconds": round(seconds, 2),
        "videos_per_s": round(videos / seconds, 2),
        "frames_per_s": round(frames / seconds, 1),
        "main_process_cpu_s": round(cpu_seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos-scale", type=int, default=2, help="multiply the tiny config's split sizes")
    parser.add_argument("--demo", action="store_true", help="also time configs/synthesize/demo.yaml (num_workers=2)")
    args = parser.parse_args()
    k = args.videos_scale
    small = ["width=128", "height=128", f"primary.splits.train={12 * k}", f"primary.splits.dev={4 * k}", f"primary.splits.test={4 * k}",
             f"auxiliary.splits.train={6 * k}", f"auxiliary.splits.dev={3 * k}", f"auxiliary.splits.test={3 * k}"]  # fmt: skip
    load = os.getloadavg()[0]
    runs = [timed_run(REPO / "configs/synthesize/tiny.yaml", [*small, f"num_workers={w}"]) for w in (1, 2)]
    result = {
        "bench": "synthesize",
        "config": f"configs/synthesize/tiny.yaml at 128x128, splits x{k}",
        "baseline_workers_1": runs[0],
        "workers_2": runs[1],
        "speedup_2_vs_1": round(runs[0]["seconds"] / runs[1]["seconds"], 2),
        "cpus": os.cpu_count(),
        "load_avg_1min_at_start": round(load, 2),
        "python": platform.python_version(),
    }
    if args.demo:
        result["demo"] = timed_run(REPO / "configs/synthesize/demo.yaml", ["num_workers=2"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
