"""The isolated-sign dictionary: clips cut from continuous videos by CTC alignment, as Parquet shards.

Written by jobs/build_dictionary.py; read by the ISLR recipe (jobs/train_islr.py) and by whatever
maps or mixes isolated signs later. Layout of one dictionary (`<out_dir>/<name>/`, one language):

    manifest.json                  written last, atomically: format, version, key (hash of the
                                   recognition checkpoint, the source shards and the settings),
                                   language, checkpoint, per split its shard files and counts
    statistics.json                per split and overall (see `dictionary_statistics`)
    errors.parquet                 videos left out, one row each (name, split, stage, message,
                                   fatal): labels that cannot fit the video, unknown glosses
    <split>/<split>-b00003-00.parquet   clips of source shard file 3 of that split
    _progress/<split>-b00003.json  block receipt (pipelines/shards.py): a re-run skips it

Row schema (`dictionary_schema`; one row per clip, in source video order, then gloss order):
    name            "<video>#<i>": the i-th gloss of the source video (unique in the dictionary)
    video           the source video's name; split, signer, language as in the source shards
    gloss           the gloss (one token, as annotated); gloss_index: i (0-based)
    start, end      the clip's frames [start, end) in the source shard row's stored frames
    source_start, source_end   the same span in the original video's frame numbers (through the
                    shards' `frame_indices`: [indices[start], indices[end] or source_frames))
    num_frames      end - start; fps, height, width of the stored frames
    confidence      mean over the segment's output steps of the model's probability of the gloss
    frames          the stored frames start..end-1 as in the source shard (JPEG bytes, copied, or
                    a raw uint8 (T, H, W, 3) tensor)
    keypoints       (T, 133, 3) rows start..end-1 of the source keypoints (null without keypoints)
    keypoint_backend
Read it with `read_dictionary` (a Ray Dataset) or `read_dictionary_table` (pyarrow, a few columns);
`VideoCollate` takes its rows as it takes the shards'.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data._internal.tensor_extensions.arrow import ArrowVariableShapedTensorType

from pipelines.shards import MANIFEST, DatasetDir

FORMAT = "signbridge-dictionary"
VERSION = 1
STATISTICS = "statistics.json"
# the columns statistics and IoU need (no frames)
SMALL_COLUMNS = ["name", "video", "split", "language", "gloss", "gloss_index", "start", "end", "source_start", "source_end",
                 "num_frames", "confidence"]


def dictionary_schema(frame_storage: Literal["jpeg", "raw"], keypoint_dtype: str) -> pa.Schema:
    """The clip rows' schema (module docstring); frames and keypoints stored as in the source shards."""
    frames = pa.list_(pa.binary()) if frame_storage == "jpeg" else ArrowVariableShapedTensorType(pa.uint8(), 4)
    kp = ArrowVariableShapedTensorType(pa.from_numpy_dtype(np.dtype(keypoint_dtype)), 3)
    ints = ("gloss_index", "start", "end", "source_start", "source_end", "num_frames", "height", "width")
    return pa.schema([
        pa.field("name", pa.string(), nullable=False),
        pa.field("video", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("signer", pa.string()),
        pa.field("language", pa.string()),
        pa.field("gloss", pa.string(), nullable=False),
        *(pa.field(k, pa.int32()) for k in ints),
        pa.field("fps", pa.float32()),
        pa.field("confidence", pa.float32()),
        pa.field("frames", frames),
        pa.field("keypoints", kp),
        pa.field("keypoint_backend", pa.string()),
    ])


def cut_clips(row: dict, glosses: Sequence[str], spans: np.ndarray, confidence: Sequence[float]) -> list[dict]:
    """One source shard row and its glosses' frame spans (L, 2) [start, end) -> the L clip rows."""
    n = int(row["num_frames"])
    indices = np.asarray(row["frame_indices"], np.int64) if row.get("frame_indices") is not None else np.arange(n)
    source_frames = int(row.get("source_frames") or n)
    keypoints = row.get("keypoints")
    clips = []
    for i, (gloss, (start, end), conf) in enumerate(zip(glosses, np.asarray(spans).tolist(), confidence)):
        if not 0 <= start < end <= n:
            raise ValueError(f"{row['name']}: gloss {i} ({gloss}) has frames [{start}, {end}) outside its {n} frames")
        clips.append({
            "name": f"{row['name']}#{i}", "video": str(row["name"]), "split": str(row["split"]), "signer": row.get("signer"),
            "language": row.get("language"), "gloss": gloss, "gloss_index": i, "start": start, "end": end,
            "source_start": int(indices[start]), "source_end": int(indices[end]) if end < n else source_frames,
            "num_frames": end - start, "height": int(row["height"]), "width": int(row["width"]), "fps": float(row["fps"]),
            "confidence": float(conf), "frames": row["frames"][start:end],
            "keypoints": None if keypoints is None or len(keypoints) == 0 else np.asarray(keypoints)[start:end],
            "keypoint_backend": row.get("keypoint_backend"),
        })
    return clips


# ---- quality against the true boundaries (synthetic corpus) -------------------------------------------


def interval_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of frame intervals [start, end): a, b (N, 2) -> (N,) |a ∩ b| / |a ∪ b| (0 where both are empty)."""
    a, b = np.asarray(a, np.int64).reshape(-1, 2), np.asarray(b, np.int64).reshape(-1, 2)
    inter = np.clip(np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    union = (a[:, 1] - a[:, 0]) + (b[:, 1] - b[:, 0]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def read_true_signs(path: str | Path) -> dict[str, list[dict]]:
    """`signs.<split>.jsonl` of the synthetic corpus -> {video: [{"gloss", "start", "end"}, ...]}."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                out[item["name"]] = [{"gloss": s["gloss"], "start": int(s["start"]), "end": int(s["end"])} for s in item["signs"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{line_no}: not a sign-boundary line ({exc!r})") from None
    return out


def clip_ious(clips: Iterable[dict], truth: dict[str, list[dict]]) -> tuple[list[float], list[str]]:
    """IoU of every clip (source_start/source_end) with the true span of the same gloss of its
    video. Returns the IoUs and problems (a video missing from `truth`, a gloss that differs)."""
    ious, problems = [], []
    for c in clips:
        signs = truth.get(c["video"])
        i = int(c["gloss_index"])
        if signs is None:
            problems.append(f"{c['video']}: no true boundaries")
            continue
        if i >= len(signs) or signs[i]["gloss"] != c["gloss"]:
            problems.append(f"{c['video']}: gloss {i} is {c['gloss']!r}, the true signs say "
                            f"{signs[i]['gloss'] if i < len(signs) else None!r}")
            continue
        ious.append(float(interval_iou([[c["source_start"], c["source_end"]]], [[signs[i]["start"], signs[i]["end"]]])[0]))
    return ious, problems


# ---- statistics ------------------------------------------------------------------------------------------


def dictionary_statistics(clips: Sequence[dict], errors: Sequence[dict], videos: dict[str, int],
                          ious: dict[str, list[float]] | None = None) -> dict[str, dict]:
    """Per split and "all": source videos, videos aligned and left out (unfittable: labels longer
    than the video allows; other errors), segments, mean / min / max clip length (stored frames),
    vocabulary (distinct glosses), mean confidence, and with `ious` (per split) the mean IoU
    against the true boundaries. `clips` need SMALL_COLUMNS; `errors` name, split, stage."""
    by_split: dict[str, list[dict]] = defaultdict(list)
    for c in clips:
        by_split[c["split"]].append(c)
    bad: dict[str, list[dict]] = defaultdict(list)
    for e in errors:
        bad[e["split"]].append(e)
    out = {}
    splits = list(videos)
    for split in [*splits, "all"]:
        cs = list(clips) if split == "all" else by_split[split]
        es = [e for s in splits for e in bad[s]] if split == "all" else bad[split]
        lengths = np.array([c["num_frames"] for c in cs], np.float64)
        stats: dict[str, Any] = {
            "videos": sum(videos.values()) if split == "all" else videos[split],
            "aligned_videos": len({c["video"] for c in cs}),
            "unfittable_videos": sum(e["stage"] == "unfittable" for e in es),
            "other_errors": sum(e["stage"] != "unfittable" for e in es),
            "segments": len(cs),
            "mean_length": float(lengths.mean()) if len(cs) else 0.0,
            "min_length": int(lengths.min()) if len(cs) else 0,
            "max_length": int(lengths.max()) if len(cs) else 0,
            "vocabulary": len({c["gloss"] for c in cs}),
            "mean_confidence": float(np.mean([c["confidence"] for c in cs])) if cs else 0.0,
            "unfittable": sorted(e["name"] for e in es if e["stage"] == "unfittable"),
        }
        if ious is not None:
            values = [v for s in splits for v in ious.get(s, [])] if split == "all" else ious.get(split, [])
            stats["iou_segments"] = len(values)
            stats["mean_iou"] = float(np.mean(values)) if values else None
        out[split] = stats
    return out


def gloss_counts(clips: Iterable[dict]) -> Counter:
    """Clips per gloss."""
    return Counter(c["gloss"] for c in clips)


# ---- reading --------------------------------------------------------------------------------------------


def read_dictionary_manifest(root: str) -> dict:
    """The manifest of the dictionary at `root` (a folder or URI); a clear error when there is none."""
    directory = DatasetDir(root)
    if not directory.exists(MANIFEST):
        raise FileNotFoundError(f"{directory.uri}/{MANIFEST}: not found — run jobs/build_dictionary.py (or let it finish) first")
    manifest = json.loads(directory.read_text(MANIFEST))
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{directory.uri}/{MANIFEST}: not a {FORMAT} version {VERSION} manifest "
                         f"(format {manifest.get('format')!r}, version {manifest.get('version')!r})")
    return manifest


def dictionary_uris(root: str, splits: str | Sequence[str]) -> list[str]:
    """URIs of the dictionary's shard files of the given split(s), in source order."""
    manifest = read_dictionary_manifest(root)
    directory = DatasetDir(root)
    out = []
    for split in [splits] if isinstance(splits, str) else list(splits):
        if split not in manifest["splits"]:
            raise KeyError(f"{directory.uri}: the dictionary has no split {split!r} (have {sorted(manifest['splits'])})")
        out.extend(directory.uri_of(f["path"]) for f in manifest["splits"][split]["shards"])
    return out


def read_dictionary_table(root: str, splits: str | Sequence[str], columns: Sequence[str] = SMALL_COLUMNS,
                          names: Sequence[str] | None = None) -> pa.Table:
    """Some columns of the dictionary's clips (pyarrow, in the driver; no frames by default); with
    `names`, only the clips of those names."""
    directory = DatasetDir(root)
    tables = []
    for uri in dictionary_uris(root, splits):
        with directory.fs.open_input_file(DatasetDir(uri).path) as f:
            tables.append(pq.read_table(f, columns=list(columns), filters=None if names is None else [("name", "in", list(names))]))
    return pa.concat_tables(tables) if tables else dictionary_schema("jpeg", "float16").empty_table().select(list(columns))


def read_dictionary(root: str, splits: str | Sequence[str] = "train", columns: Sequence[str] | None = None):
    """A Ray Dataset over the dictionary's clips of the given split(s) (only files in the manifest)."""
    import ray.data

    from pipelines.video_io import resolve_fs

    paths = dictionary_uris(root, splits)
    if not paths:
        raise ValueError(f"{root}: no dictionary clips for split(s) {splits!r}")
    fs, _ = resolve_fs(paths[0])
    ds = ray.data.read_parquet([resolve_fs(p)[1] for p in paths], filesystem=fs)
    return ds.select_columns(list(columns)) if columns else ds


def read_shard_rows(uri: str) -> list[dict]:
    """Every row of one Parquet shard file (source shards or dictionary), tensors as numpy arrays
    and JPEG frames as lists of bytes."""
    directory = DatasetDir(uri)
    with directory.fs.open_input_file(directory.path) as f:
        table = pq.read_table(f)
    columns = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if isinstance(col.type, ArrowVariableShapedTensorType):
            if 0 < col.null_count < len(col):
                raise ValueError(f"{uri}: column {name} is null in some rows only")
            columns[name] = [None] * len(col) if col.null_count else list(col.to_numpy())
        else:
            columns[name] = col.to_pylist()
    return [{k: v[i] for k, v in columns.items()} for i in range(table.num_rows)]
