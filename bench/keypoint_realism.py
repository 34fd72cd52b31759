"""How a real estimator's keypoints err on the rendered videos, against the exact keypoints, and
how the `groundtruth` back-end's simulated errors (estimator_noise) compare, on the same videos.

Runs MediaPipe Holistic (the back-end preprocessing uses) over the first `--videos` videos of a
split of the synthetic corpus, as stored (the corpus' resolution), and prints one JSON line with
`error_statistics` for MediaPipe, the `EstimatorNoiseConfig` fitted to them (`fit_noise_config`),
and the same statistics of the simulated estimator with those fitted settings and with the
`keypoints.groundtruth.noise` of `--noise-config` (a preprocessing config; default the demo's):

    .venv/bin/python bench/keypoint_realism.py --corpus outputs/demo/corpus --videos 24
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np


def read_rgb(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (ok := cap.read())[0]:
        frames.append(cv2.cvtColor(ok[1], cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise SystemExit(f"{path}: no frames decoded")
    return np.stack(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="outputs/demo/corpus")
    ap.add_argument("--language", default="sgsl-a")
    ap.add_argument("--split", default="train")
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--noise-config", default="configs/data/synthetic_demo.yaml")
    args = ap.parse_args()

    from common.config import load_config
    from jobs.preprocess import PreprocessConfig
    from pipelines.keypoints.base import MediaPipeConfig, VideoFrames
    from pipelines.keypoints.estimator_noise import EstimatorNoiseConfig, apply_estimator_noise, error_statistics, fit_noise_config
    from pipelines.keypoints.mediapipe_holistic import MediaPipeHolistic
    from pipelines.video_io import Geometry

    lang = Path(args.corpus) / args.language
    names = sorted(p.stem for p in (lang / "videos").glob(f"*_{args.split}_*.mp4"))[: args.videos]
    if not names:
        raise SystemExit(f"{lang}/videos: no {args.split} videos (run scripts/demo.sh)")
    noise = load_config(PreprocessConfig, args.noise_config).keypoints.groundtruth.noise or EstimatorNoiseConfig()
    estimator = MediaPipeHolistic(MediaPipeConfig())
    exact, mediapipe, t0, frames = [], [], time.time(), 0
    for name in names:
        rgb = read_rgb(lang / "videos" / f"{name}.mp4")
        kp = np.load(lang / "keypoints" / f"{name}.npy").astype(np.float32)[: len(rgb)]
        exact.append(kp)
        mediapipe.append(estimator.estimate([VideoFrames(name, rgb[: len(kp)], np.arange(len(kp)), Geometry())])[0])
        frames += len(kp)
    measured = error_statistics(exact, mediapipe)
    fitted = fit_noise_config(measured)
    print(json.dumps({
        "bench": "keypoint_realism", "corpus": args.corpus, "language": args.language, "split": args.split,
        "videos": len(names), "frames": frames, "resolution": list(read_rgb(lang / "videos" / f"{names[0]}.mp4").shape[1:3]),
        "mediapipe_s_per_frame": round((time.time() - t0) / frames, 4),
        "mediapipe": measured,
        "fitted_noise": fitted.model_dump(),  # EstimatorNoiseConfig reproducing MediaPipe's statistics
        "simulated_fitted": error_statistics(exact, [apply_estimator_noise(k, fitted, n) for k, n in zip(exact, names)]),
        "config_noise": noise.model_dump(),  # keypoints.groundtruth.noise of --noise-config
        "simulated_config": error_statistics(exact, [apply_estimator_noise(k, noise, n) for k, n in zip(exact, names)]),
        "load_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
