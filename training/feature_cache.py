"""Backbone features of a frozen Sign2Gloss model, computed once per video and cached as Parquet
beside the shards, so that Sign2Text training with a frozen backbone reads features, not frames.

    <shards>/<dataset>/features/<key>/
        manifest.json            written last: key, checkpoint, shard files, streams, rows per split
        <split>/*.parquet        one row per video: name, gloss, text, steps, features_<stream> (steps, C)

`key` is a hash of the checkpoint (its weights and model config, by content) and of the split's
shard files (names and sizes), so a changed checkpoint or re-preprocessed shards give a new cache
and a stale one is never read. A finished split is never recomputed (each split is written to a
temporary folder and renamed); an interrupted build recomputes only the unfinished splits.

The pass is Ray Data: `map_batches` over the shards with an actor pool whose actors hold the model
(on a GPU each when the cluster has GPUs, bf16 autocast there). Each clip runs alone, in eval mode
with the checkpoint's evaluation input settings, so a video's features do not depend on the videos
batched with it: they equal `model.backbone` on that clip by itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.files import atomic_directory, atomic_write_json
from pipelines.recognition_batches import RecognitionCollate, shard_columns
from pipelines.sign2text_batches import feature_column
from training.checkpoint import CONFIG_FILE, MODEL_DIR, WEIGHTS_FILE, load_sign2gloss, resolve_checkpoint

log = logging.getLogger(__name__)

FEATURES_DIR, MANIFEST = "features", "manifest.json"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(checkpoint: str | Path, shards: str, dataset: str | None, splits: list[str], dtype: str) -> str:
    """16 hex digits over the checkpoint's weights and model config (content) and the splits' shard
    files (paths and sizes) and the stored dtype."""
    from pipelines.shards import DatasetDir, dataset_uri, read_manifest

    ckpt = resolve_checkpoint(checkpoint)
    manifest = read_manifest(shards, dataset)
    directory = DatasetDir(dataset_uri(shards, dataset))
    files = {s: [(f["path"], directory.size(f["path"])) for f in manifest["splits"][s]["shards"]] for s in sorted(splits)}
    payload = {"weights": _file_digest(ckpt / MODEL_DIR / WEIGHTS_FILE), "config": _file_digest(ckpt / MODEL_DIR / CONFIG_FILE),
               "shards": files, "dtype": dtype}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def ragged_column(arrays: list[np.ndarray]) -> np.ndarray:
    """A 1-D object array holding `arrays` as they are. (`np.array(arrays, dtype=object)` stacks
    equal-shaped arrays into one array of Python floats, which Ray stores as float64 tensors that
    do not unify with other batches' float32 ones.)"""
    column = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        column[i] = a
    return column


class BackboneActor:
    """A Ray Data actor holding a Sign2Gloss model: shard rows -> feature rows."""

    def __init__(self, checkpoint: str, dtype: str = "float32"):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.ck = load_sign2gloss(checkpoint, map_location=self.device)
        self.model = self.ck.model.to(self.device).eval()
        self.collate = RecognitionCollate(self.ck.collate, train=False, glosses=self.ck.vocab.glosses,
                                          frame_stride=self.ck.frame_stride)
        self.dtype = np.dtype(dtype)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from training.distributed import autocast

        rows = self.collate.prepare(batch)
        out: dict[str, list] = {"name": [], "gloss": [], "text": [], "steps": []}
        for s in self.model.config.streams:
            out[feature_column(s)] = []
        for row in rows:
            clip = self.collate.collate_prepared([row])
            with torch.no_grad(), autocast(self.device):
                feats = self.model.backbone(clip["frames"].to(self.device), clip["frame_lengths"].to(self.device),
                                            clip["keypoints"].to(self.device) if self.ck.uses_keypoints else None)
            steps = int(feats["lengths"][0])
            out["name"].append(str(row["name"]))
            out["gloss"].append(str(row["gloss"]))
            out["text"].append(clip["texts"][0])
            out["steps"].append(steps)
            for s, f in feats["stream_features"].items():
                out[feature_column(s)].append(f[0, :steps].float().cpu().numpy().astype(self.dtype))
        result: dict[str, Any] = {k: ragged_column(v) for k, v in out.items() if k.startswith("features_")}
        result.update(name=np.array(out["name"]), gloss=np.array(out["gloss"]),
                      text=np.array(out["text"], dtype=object), steps=np.array(out["steps"], dtype=np.int64))
        return result


def build_feature_cache(checkpoint: str | Path, shards: str, dataset: str | None, splits: list[str], *,
                        dtype: str = "float32", actors: int = 1, cpus_per_actor: float = 0.5, gpus_per_actor: float = 1.0,
                        videos_per_batch: int = 4, limits: dict[str, int | None] | None = None) -> dict:
    """Make (or find) the feature cache of `checkpoint` on the splits' shards (local shards only).
    `limits`: per split, the first N videos only (tests, smoke runs; part of the key). Returns
    {"dir": cache folder, "key", "splits": {split: folder}, "computed": [splits computed now],
    "seconds"}."""
    import ray
    from ray.data import ActorPoolStrategy

    from pipelines.shards import dataset_uri, read_shards
    from training.ray_cluster import init_ray

    limits = limits or {}
    key = cache_key(checkpoint, shards, dataset, splits, dtype)
    if any(limits.get(s) for s in splits):
        key = hashlib.sha256(json.dumps([key, {s: limits.get(s) for s in sorted(splits)}]).encode()).hexdigest()[:16]
    root = Path(dataset_uri(shards, dataset)) / FEATURES_DIR / key
    manifest_path = root / MANIFEST
    done = json.loads(manifest_path.read_text())["splits"] if manifest_path.exists() else {}
    ck = load_sign2gloss(checkpoint)
    columns = shard_columns(ck.uses_keypoints) + ["text"]
    computed, t0 = [], time.time()
    for split in splits:
        out = root / split
        if split in done and out.is_dir():
            continue
        init_ray(job_priority=True)
        gpus = gpus_per_actor if ray.cluster_resources().get("GPU", 0) > 0 else 0
        ds = read_shards(shards, dataset, split, columns=columns)
        if limits.get(split):
            ds = ds.limit(limits[split])
        ds = ds.map_batches(BackboneActor, fn_constructor_kwargs={"checkpoint": str(ck.path), "dtype": dtype},
                            batch_size=videos_per_batch, batch_format="numpy", compute=ActorPoolStrategy(size=actors),
                            num_cpus=cpus_per_actor, num_gpus=gpus)
        with atomic_directory(out) as tmp:
            ds.write_parquet(str(tmp))
        done[split] = {"rows": sum(1 for _ in _parquet_rows(out))}
        computed.append(split)
        atomic_write_json(manifest_path, {"key": key, "checkpoint": str(ck.path), "shards": dataset_uri(shards, dataset),
                                          "streams": list(ck.model.config.streams), "dtype": dtype, "splits": done})
        log.info("feature cache %s: %s computed (%d videos)", root, split, done[split]["rows"])
    return {"dir": str(root), "key": key, "splits": {s: str(root / s) for s in splits}, "computed": computed,
            "seconds": time.time() - t0}


def _parquet_rows(folder: Path):
    import pyarrow.parquet as pq

    for f in sorted(folder.glob("*.parquet")):
        yield from range(pq.ParquetFile(f).metadata.num_rows)


def read_feature_split(folder: str | Path):
    """A Ray Dataset over one split's cached feature rows."""
    import ray.data

    files = sorted(str(p) for p in Path(folder).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder}: no cached feature files (build the cache with build_feature_cache)")
    return ray.data.read_parquet(files)
