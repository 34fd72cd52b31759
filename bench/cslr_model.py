"""Forward+backward time per clip of the CSLR models at CPU-default sizes.

Runs one training step (forward, loss, backward; no optimiser) of SingleStream (RGB only),
SingleStream with the sign pyramid, and TwoStream-SLR (laterals, pyramids, three heads, KL) on
random clips, and compares each with the budget of NOTES.md: ~50 ms forward+backward per clip for
a few-minute CPU demo. Prints one JSON line.

    .venv/bin/python bench/cslr_model.py [--widths 0.125,0.25] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from models.heatmaps import PUBLIC_79, keypoint_indices
from models.two_stream import TwoStreamConfig, TwoStreamSLR

BUDGET_MS = 50.0
MODELS = {
    "single": dict(streams=("rgb",), pyramid=False),
    "single_pyramid": dict(streams=("rgb",)),
    "two_stream": dict(),
}


def step_ms(model: TwoStreamSLR, frames, lengths, kp, labels, label_lengths, repeats: int) -> dict[str, float]:
    """Wall and CPU milliseconds per clip of forward + loss + backward (CPU time / threads is
    what the step costs when the cores are not shared; the wall time includes waiting for them)."""
    model.zero_grad(set_to_none=True)
    loss, _ = model.loss(model(frames, lengths, kp), labels, label_lengths)  # warm-up
    loss.backward()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        loss, _ = model.loss(model(frames, lengths, kp), labels, label_lengths)
        loss.backward()
    n = repeats * frames.shape[0]
    return {"wall": round((time.perf_counter() - w0) * 1000 / n, 1),
            "cpu_per_thread": round((time.process_time() - c0) * 1000 / n / torch.get_num_threads(), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="0.125,0.25")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--classes", type=int, default=64)
    ap.add_argument("--head-hidden", type=int, default=128)
    ap.add_argument("--head-ff", type=int, default=256)
    ap.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    ap.add_argument("--keypoint-parts", default=",".join(PUBLIC_79), help="heatmap channels (models/heatmaps.py PARTS)")
    ap.add_argument("--sizes", default="32x64,64x96", help="FRAMESxPIXELS,... of the RGB clips")
    ap.add_argument("--keypoint-ratio", type=int, default=2, help="heatmap size = RGB pixels / this")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    parts = tuple(args.keypoint_parts.split(","))
    results = {}
    for width in [float(w) for w in args.widths.split(",")]:
        for T, px in [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]:
            B = args.batch
            frames = torch.rand(B, T, 3, px, px)
            kp = torch.rand(B, T, 133, 3) * torch.tensor([px, px, 1.0])
            lengths = torch.full((B,), T)
            labels = torch.randint(3, args.classes, (B, T // 16))
            label_lengths = torch.full((B,), T // 16)
            for name in args.models.split(","):
                kw = MODELS[name]
                cfg = TwoStreamConfig(num_classes=args.classes, width=width, rgb_size=px, keypoint_size=px // args.keypoint_ratio,
                                      heatmap_sigma=px / 64, head_hidden=args.head_hidden, head_ff=args.head_ff,
                                      lateral_kernel=(3, 3, 3), keypoint_parts=parts, **kw)
                model = TwoStreamSLR(cfg).train()
                ms = step_ms(model, frames, lengths, kp, labels, label_lengths, args.repeats)
                results[f"{name}/w{width}/T{T}/{px}px"] = ms
    print(json.dumps({
        "bench": "cslr_model_fwd_bwd_ms_per_clip", "batch": args.batch, "threads": args.threads,
        "head_hidden": args.head_hidden, "head_ff": args.head_ff, "classes": args.classes,
        "keypoints": len(keypoint_indices(parts)), "keypoint_ratio": args.keypoint_ratio,
        "budget_ms": BUDGET_MS, "ms_per_clip": results,
        "within_budget_cpu": sorted(k for k, v in results.items() if v["cpu_per_thread"] <= BUDGET_MS),
        "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
