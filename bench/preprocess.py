"""Speed of preprocessing (Ray Data -> Parquet) and of the training-side loader.

    .venv/bin/python bench/preprocess.py [--videos 24] [--backends groundtruth,mediapipe] [--cpus 1,2]

1. Generates a synthetic corpus with the demo config's 128x128 frames (`--videos` training videos
   of the primary language, PNG frame folders too) in a temporary folder (not timed).
2. Pipeline: runs jobs/preprocess.py's `run` on it for each keypoint back-end and each Ray CPU
   count (a fresh local Ray per count; resources scaled to fit), timing the whole run including
   actor start-up: frames/s = stored frames / wall seconds.
3. Loader, in the same run: clips/s of one training epoch (batch 4, 112x112, train augmentation)
   from the shards (`read_shards(...).iter_torch_batches(collate_fn=VideoCollate)`) against the
   public code's approach (every clip read from its PNG frame folder, frame by frame with PIL,
   one sample at a time, then the same crop/resize/stack).
Prints one JSON line. The machine may be shared: the load average is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def make_corpus(root: Path, videos: int) -> Path:
    from common.config import load_config
    from jobs.synthesize import SynthesizeConfig, synthesize

    config = load_config(SynthesizeConfig, REPO / "configs/synthesize/demo.yaml", [
        f"out_dir={root}", "num_workers=1", "write_frame_folders=true", "contact_sheet_videos=0",
        f"primary.splits.train={videos}", "primary.splits.dev=0", "primary.splits.test=0",
        "auxiliary.splits.train=1", "auxiliary.splits.dev=0", "auxiliary.splits.test=0",
    ])
    synthesize(config, progress=False)
    return root


def preprocess_config(corpus: Path, out: Path, backend: str, cpus: int):
    from jobs.preprocess import PreprocessConfig

    share = cpus / 4  # decode, encode and each keypoint actor get a quarter of the CPUs
    return PreprocessConfig.model_validate({
        "name": "{corpus}-{language}", "out_dir": str(out), "splits": ["train"],
        "corpus": {"name": "synthetic", "format": "synthetic", "language": "sgsl-a", "root": str(corpus)},
        "frames": {"resize": "none"},
        "keypoints": {"backend": backend},
        "shards": {"videos_per_block": 8},
        "resources": {"decode_cpus": share, "encode_cpus": share, "keypoint_cpus": share,
                      "keypoint_actors": 2 if cpus >= 2 else 1, "videos_per_batch": 2},
    })


def start_ray(cpus: int):
    import ray
    from ray.data import DataContext

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             object_store_memory=500 * 2**20)
    DataContext.get_current().enable_progress_bars = False
    return ray


def bench_pipeline(corpus: Path, work: Path, backends: list[str], cpu_counts: list[int]) -> dict:
    from jobs.preprocess import run

    out: dict = {}
    for cpus in cpu_counts:
        ray = start_ray(cpus)
        try:
            for backend in backends:
                cfg = preprocess_config(corpus, work / f"shards-{backend}-{cpus}", backend, cpus)
                start = time.perf_counter()
                [result] = run(cfg, overwrite=True)
                seconds = time.perf_counter() - start
                frames = result.splits["train"].frames
                out.setdefault(backend, {})[f"{cpus}cpu"] = {
                    "videos": result.splits["train"].written, "frames": frames, "seconds": round(seconds, 2),
                    "frames_per_s": round(frames / seconds, 1),
                }
        finally:
            ray.shutdown()
    return out


def png_folder_clip(folder: Path, rng: np.random.Generator, size: int) -> torch.Tensor:
    """The public code's way: every frame file opened with PIL, converted, cropped, resized."""
    from PIL import Image

    from pipelines.video_collate import random_resized_crop_box, resample_indices

    files = sorted(folder.glob("*.png"))
    n = len(files)
    length = max(4, int(round(n * rng.uniform(0.5, 1.5) / 4)) * 4)
    idx = resample_indices(n, length)
    with Image.open(files[0]) as im:
        w, h = im.size
    x0, y0, cw, ch = random_resized_crop_box(h, w, (0.7, 1.0), (0.75, 1.3), rng)
    frames = []
    for i in idx:
        with Image.open(files[i]) as im:
            im = im.convert("RGB").crop((x0, y0, x0 + cw, y0 + ch)).resize((size, size), Image.BILINEAR)
            frames.append(torch.from_numpy(np.array(im)).permute(2, 0, 1))
    return torch.stack(frames).float() / 255


def bench_loader(corpus: Path, shards_root: Path, batch: int, size: int, epochs: int = 2) -> dict:
    from pipelines.shards import read_shards
    from pipelines.video_collate import VideoCollate, VideoCollateConfig

    ray = start_ray(2)
    try:
        collate = VideoCollate(VideoCollateConfig(height=size, width=size), train=True, generator=0)
        ds = read_shards(str(shards_root), "synthetic-sgsl-a", "train").materialize()
        best_shards = 0.0
        for _ in range(epochs):  # the first epoch pays Ray's start-up; report the better one
            start, clips = time.perf_counter(), 0
            for b in ds.iter_torch_batches(batch_size=batch, collate_fn=collate):
                clips += len(b["names"])
            best_shards = max(best_shards, clips / (time.perf_counter() - start))
    finally:
        ray.shutdown()
    folders = sorted((corpus / "sgsl-a" / "frames").iterdir())
    rng = np.random.default_rng(0)
    best_png = 0.0
    for _ in range(epochs):
        start, clips = time.perf_counter(), 0
        for i in range(0, len(folders), batch):
            clips_ = [png_folder_clip(f / "1", rng, size) for f in folders[i : i + batch]]
            t_max = max(len(c) for c in clips_)
            torch.stack([torch.cat([c, c.new_zeros((t_max - len(c), *c.shape[1:]))]) for c in clips_])
            clips += len(clips_)
        best_png = max(best_png, clips / (time.perf_counter() - start))
    return {"clips": len(folders), "batch": batch, "size": size, "shards_clips_per_s": round(best_shards, 2),
            "png_folders_clips_per_s": round(best_png, 2), "speedup": round(best_shards / best_png, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--backends", default="groundtruth,mediapipe")
    parser.add_argument("--cpus", default="1,2")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sb_bench_pre_") as tmp:
        work = Path(tmp)
        corpus = make_corpus(work / "corpus", args.videos)
        pipeline = bench_pipeline(corpus, work, args.backends.split(","), [int(c) for c in args.cpus.split(",")])
        first = args.backends.split(",")[0]
        loader = bench_loader(corpus, work / f"shards-{first}-{args.cpus.split(',')[-1]}", args.batch, args.size)
    print(json.dumps({
        "bench": "preprocess", "pipeline_frames_per_s": pipeline, "loader": loader,
        "frame_size": "128x128", "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count(), "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
