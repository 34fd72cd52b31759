"""Preprocessing on Ray Data: decode videos, estimate keypoints, write Parquet shards.

    python jobs/preprocess.py --config configs/data/synthetic_demo.yaml [key=value ...] [--overwrite]

Pipeline (streaming): plan (corpus order, fixed blocks of `shards.videos_per_block` videos) ->
decode + crop/resize + subsample (tasks) -> keypoints (an actor pool; the model loads once per
actor; `none` skips it) -> JPEG encode (tasks) -> the driver writes each block's shards as soon as
the block is complete (temporary name + rename), then the block's receipt. At the end: errors
table, vocabulary, and the manifest, written last and atomically. See pipelines/shards.py.

Bad input never stops the run: every problem is a row in `errors.parquet` (name, split, stage,
message, fatal) and a warning summary; the exit status is 1 only when the share of failed videos
exceeds `max_error_share`. Re-running skips complete blocks (same hash of the config and of the
corpus: its annotations and, if synthetic, its generator config) and rebuilds the rest; a
different config or corpus on an existing output is refused unless `--overwrite` (which rebuilds).

Works unchanged locally (`ray.init()` starts Ray) and on a cluster (`ray job submit -- python
jobs/preprocess.py ...`); `video.root` and `out_dir` may be URIs (file://, s3://, ...).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
from pydantic import Field

from common.config import ConfigError, StrictModel, config_hash, job_argument_parser, load_config, to_plain
from pipelines.corpora import CorpusConfig, CorpusFormatError, read_corpus, read_synthetic_manifest
from pipelines.keypoints.base import NUM_KEYPOINTS, KeypointConfig, KeypointStage
from pipelines.records import Sample
from pipelines.shards import (
    ERRORS,
    MANIFEST,
    PROGRESS,
    SCHEMA_VERSION,
    VOCABULARY,
    BlockReceipt,
    DatasetDir,
    ErrorRow,
    errors_table,
    load_receipt,
    read_errors,
    shard_schema,
    write_block,
)
from pipelines.video_io import FrameSpec, VideoError, VideoSource, decode_video, encode_jpeg_frames, locate
from pipelines.vocabulary import GlossVocabulary
from training.ray_cluster import storage_path

log = logging.getLogger("preprocess")


class VideoConfig(StrictModel):
    """Where the videos are. root: a folder, a .zip archive or a URI, "{split}" replaced by the
    split (default: the corpus' video_root; for the synthetic corpus `<root>/<language>`).
    pattern: one sample's video under root, with {name}, {video} (the annotation's video column),
    {split}, {signer} replaced: "{video}" (PHOENIX `<name>/1/*.png`, synthetic `videos/x.mp4`),
    "images/{video}" (the public code's PHOENIX-2014T zip), "sentence_frames-512x512/{name}"
    (CSL-Daily), "{name}.mp4" (a folder of mp4s)."""

    root: str | None = None
    pattern: str = "{video}"


class ShardConfig(StrictModel):
    frame_storage: Literal["jpeg", "raw"] = "jpeg"
    jpeg_quality: int = Field(90, ge=1, le=100)
    videos_per_block: int = Field(64, ge=1)  # resume granularity; a block is 1+ shard files
    max_shard_mb: float = Field(256.0, gt=0, le=1536)
    row_group_rows: int = Field(16, ge=1)
    compression: Literal["zstd", "snappy", "none"] = "zstd"


class ResourcesConfig(StrictModel):
    """Ray resources; they never change the output. On a 2-CPU machine keep the sum of what runs at
    once below the CPUs (NOTES: Ray Data can wait forever for resources that never free)."""

    decode_cpus: float = Field(1.0, gt=0)
    encode_cpus: float = Field(1.0, gt=0)
    keypoint_actors: int = Field(1, ge=1)
    keypoint_cpus: float = Field(1.0, ge=0)
    keypoint_gpus: float = Field(0.0, ge=0)  # per actor; used only when the cluster has GPUs
    videos_per_batch: int = Field(2, ge=1)  # videos per keypoint call (frames batched inside)


class RayConfig(StrictModel):
    """address None: join the cluster in RAY_ADDRESS (as under `ray job submit`) or start a local one."""

    address: str | None = None
    num_cpus: int | None = None  # local instance only


class PreprocessConfig(StrictModel):
    name: str = "{corpus}"  # output folder under out_dir; {corpus} and {language} replaced
    out_dir: str = "outputs/shards"
    corpus: CorpusConfig
    languages: list[str] = []  # synthetic: preprocess these languages (["*"]: all); [] = corpus.language
    splits: list[str] = ["train", "dev", "test"]
    limit: int | None = None  # first N videos per split (demos, smoke tests)
    video: VideoConfig = VideoConfig()
    frames: FrameSpec = FrameSpec()
    keypoints: KeypointConfig = KeypointConfig()
    shards: ShardConfig = ShardConfig()
    resources: ResourcesConfig = ResourcesConfig()
    ray: RayConfig = RayConfig()
    max_error_share: float = Field(0.05, ge=0, le=1)


def output_hash(config: PreprocessConfig, corpus_fingerprint: str) -> str:
    """Hash of what determines the shards' content (not where they go, nor where the corpus lies, nor
    Ray resources), and of the corpus they copy (`corpus_fingerprint`), so shards of a regenerated
    corpus are never reused and a moved corpus keeps its shards."""
    corpus = config.corpus.model_copy(update={"root": None, "files": {}, "video_root": None})
    content = config.model_copy(update={"out_dir": "", "resources": ResourcesConfig(), "ray": RayConfig(), "max_error_share": 0.0,
                                        "languages": [], "corpus": corpus, "video": config.video.model_copy(update={"root": None})})
    return config_hash(content, extra={"corpus": corpus_fingerprint})


def corpus_fingerprint(config: PreprocessConfig, samples_by_split: dict[str, list[Sample]]) -> str:
    """sha256 of the annotations the shards copy (name, signer, gloss, text, video, length per sample)
    and, for a synthetic corpus, its generator's config hash (`synthetic.json`): the only trace of
    its pixels, since regenerating with other recording conditions keeps every annotation."""
    digest = hashlib.sha256()
    for split in sorted(samples_by_split):
        for s in samples_by_split[split]:
            digest.update(json.dumps([split, s.name, s.signer, s.gloss_string, s.text, s.video, s.num_frames]).encode())
    corpus = config.corpus
    if corpus.format == "synthetic" and corpus.root is not None and config.video.root is None and corpus.video_root is None:
        if (Path(corpus.root) / "synthetic.json").exists():  # test fixtures write the layout only
            digest.update(str(read_synthetic_manifest(corpus.root).get("config_hash")).encode())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class Task:
    split: str
    block: int
    index: int
    sample: Sample
    source: VideoSource | None
    locate_error: str
    keypoints_path: str

    def as_row(self) -> dict:
        s = self.sample
        return {
            "name": s.name, "split": s.split, "block": self.block, "index": self.index, "signer": s.signer,
            "language": s.language, "gloss": s.gloss_string, "text": s.text or "",
            "has_text": s.text is not None, "expected_frames": -1 if s.num_frames is None else s.num_frames,
            "source_kind": self.source.kind if self.source else "", "source_location": self.source.location if self.source else "",
            "source_archive": (self.source.archive or "") if self.source else "", "locate_error": self.locate_error,
            "keypoints_path": self.keypoints_path,
        }


def video_root(config: PreprocessConfig, split: str) -> str:
    if config.video.root is not None:
        return config.video.root.replace("{split}", split)
    corpus = config.corpus
    if corpus.video_root is not None:
        return corpus.video_root.replace("{split}", split)
    if corpus.format == "synthetic" and corpus.root is not None:
        return f"{corpus.root.rstrip('/')}/{corpus.language}"
    raise ConfigError(f"corpus {corpus.name!r}: no video location; set video.root (or corpus.video_root)")


def plan_split(config: PreprocessConfig, split: str, samples: list[Sample]) -> list[Task]:
    root = video_root(config, split)
    per_block = config.shards.videos_per_block
    tasks = []
    for index, s in enumerate(samples):
        fields = {"name": s.name, "video": s.video or "", "split": split, "signer": s.signer}
        source, error = None, ""
        if "{video}" in config.video.pattern and not s.video:
            error = "the annotation gives no video path; set video.pattern (e.g. '{name}.mp4')"
        else:
            try:
                relative = config.video.pattern.format(**fields)
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"video.pattern {config.video.pattern!r}: {exc!r}; use {{name}}, {{video}}, {{split}}, {{signer}}") from None
            source = locate(root, relative)
        kp_path = ""
        if config.keypoints.backend == "groundtruth":
            kp_path = root.rstrip("/") + "/" + config.keypoints.groundtruth.path.format(**fields)
        tasks.append(Task(split, index // per_block, index, s, source, error, kp_path))
    return tasks


# ----------------------------------------------------------------------------- Ray stages

def _error_fields(stage: str = "", message: str = "") -> dict:
    return {"error_stage": stage, "error_message": message}


def decode_row(row: dict, frames: dict) -> dict:
    """Ray Data map: a planned video -> decoded, cropped, resized, subsampled frames (or an error)."""
    spec = FrameSpec.model_validate(frames)
    out = dict(row)
    out.update(
        frames=np.zeros((0, 1, 1, 3), np.uint8), frame_indices=np.zeros(0, np.int32), geometry=np.array([0, 0, 1, 1], np.float64),
        num_frames=0, source_frames=0, fps=0.0, height=0, width=0, warnings="", decode_seconds=0.0, **_error_fields(),
    )
    start = time.perf_counter()
    try:
        if row["locate_error"]:
            raise VideoError("locate", row["locate_error"])
        source = VideoSource(row["source_kind"], row["source_location"], row["source_archive"] or None)
        expected = int(row["expected_frames"])
        video = decode_video(source, spec, expected if expected >= 0 else None)
        g = video.geometry
        out.update(
            frames=video.frames, frame_indices=video.indices.astype(np.int32), geometry=np.array([g.x0, g.y0, g.sx, g.sy], np.float64),
            num_frames=len(video.frames), source_frames=video.source_frames, fps=video.fps / spec.frame_stride,
            height=video.frames.shape[1], width=video.frames.shape[2], warnings="; ".join(video.warnings),
        )
    except VideoError as exc:
        out.update(_error_fields(exc.stage, exc.message))
    except Exception as exc:  # a decoder bug must cost one video, not the run
        out.update(_error_fields("decode", f"{type(exc).__name__}: {exc}"))
    out["decode_seconds"] = time.perf_counter() - start
    return out


def encode_row(row: dict, storage: str, quality: int, backend: str) -> dict:
    """Ray Data map: raw frames -> JPEG bytes per frame (or kept raw); drops working columns."""
    out = {k: row[k] for k in ("name", "split", "block", "index", "signer", "language", "gloss", "has_text", "text",
                               "num_frames", "source_frames", "frame_indices", "fps", "height", "width", "warnings",
                               "error_stage", "error_message", "decode_seconds")}
    out["keypoint_seconds"] = float(row.get("keypoint_seconds", 0.0))
    out["keypoint_backend"] = backend
    out["keypoints"] = row.get("keypoints") if backend != "none" else None
    frames = row["frames"]
    if out["error_stage"]:
        out["frames"], out["keypoints"] = [], None
        return out
    if storage == "raw":
        out["frames"] = np.asarray(frames, np.uint8)
        return out
    try:
        out["frames"] = encode_jpeg_frames(frames, quality)
    except ValueError as exc:
        out.update(_error_fields("encode", f"JPEG encoding failed ({exc})"))
        out["frames"], out["keypoints"] = [], None
    return out


# ----------------------------------------------------------------------------- driver

@dataclass
class SplitSummary:
    videos: int = 0
    written: int = 0
    resumed: int = 0  # videos in blocks completed by an earlier run
    frames: int = 0
    fatal: int = 0
    warnings: int = 0


@dataclass
class DatasetResult:
    name: str
    uri: str
    splits: dict[str, SplitSummary] = field(default_factory=dict)
    seconds: float = 0.0
    processed_frames: int = 0  # frames decoded by this run (not resumed)
    decode_seconds: float = 0.0  # summed over workers (decode + crop/resize)
    keypoint_seconds: float = 0.0  # summed over actors
    errors: list[ErrorRow] = field(default_factory=list)
    error_share: float = 0.0
    up_to_date: bool = False


def _ensure_ray(config: PreprocessConfig) -> None:
    from training.ray_cluster import init_ray

    init_ray(config.ray.address, num_cpus=config.ray.num_cpus)


def _build_dataset(config: PreprocessConfig, tasks: list[Task]):
    import ray
    from ray.data import ActorPoolStrategy

    res = config.resources
    items = [t.as_row() for t in tasks]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 256)))
    ds = ds.map(decode_row, fn_kwargs={"frames": config.frames.model_dump()}, num_cpus=res.decode_cpus)
    backend = config.keypoints.backend
    if backend != "none":
        gpus = res.keypoint_gpus if ray.cluster_resources().get("GPU", 0) > 0 else 0
        ds = ds.map_batches(
            KeypointStage,
            fn_constructor_kwargs={"config": config.keypoints.model_dump()},
            batch_size=res.videos_per_batch,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=res.keypoint_actors),
            num_cpus=res.keypoint_cpus,
            num_gpus=gpus,
        )
    ds = ds.map(
        encode_row,
        fn_kwargs={"storage": config.shards.frame_storage, "quality": config.shards.jpeg_quality, "backend": backend},
        num_cpus=res.encode_cpus,
    )
    return ds


def _iter_results(config: PreprocessConfig, tasks: list[Task]) -> Iterator[dict]:
    """Processed rows (dicts), roughly in plan order (Ray Data preserves order here)."""
    if not tasks:
        return
    from ray.data import DataContext

    ctx = DataContext.get_current()
    previous = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True  # blocks complete one after another: bounded driver memory
    try:
        ds = _build_dataset(config, tasks)
        yield from ds.iter_rows()
    finally:
        ctx.execution_options.preserve_order = previous


def _row_errors(row: dict) -> list[ErrorRow]:
    errors = []
    if row["error_stage"]:
        errors.append(ErrorRow(str(row["name"]), str(row["split"]), str(row["error_stage"]), str(row["error_message"]), True))
    if row.get("warnings"):
        errors.append(ErrorRow(str(row["name"]), str(row["split"]), "decode", str(row["warnings"]), False))
    return errors


def _shard_row(row: dict) -> dict:
    out = dict(row)
    out["text"] = row["text"] if row["has_text"] else None
    return out


def _existing_hashes(directory: DatasetDir) -> set[str]:
    """Config hashes of whatever an earlier run left in the folder (manifest and receipts)."""
    import pyarrow.fs as pafs

    hashes = set()
    if directory.exists(MANIFEST):
        try:
            hashes.add(json.loads(directory.read_text(MANIFEST)).get("config_hash"))
        except ValueError:
            pass
    progress = directory.full(PROGRESS)
    if directory.fs.get_file_info(progress).type == pafs.FileType.Directory:
        for info in directory.fs.get_file_info(pafs.FileSelector(progress)):
            if info.path.endswith(".json"):
                try:
                    with directory.fs.open_input_stream(info.path) as f:
                        hashes.add(json.loads(f.read()).get("config_hash"))
                except ValueError:
                    pass
    return hashes


def _manifest_is_valid(directory: DatasetDir, config_hash: str) -> dict | None:
    if not directory.exists(MANIFEST):
        return None
    try:
        manifest = json.loads(directory.read_text(MANIFEST))
    except ValueError:
        return None
    if manifest.get("config_hash") != config_hash or manifest.get("schema_version") != SCHEMA_VERSION:
        return None
    for split in manifest["splits"].values():
        if any(directory.size(f["path"]) != f["bytes"] for f in split["shards"]):
            return None
    return manifest


def _save_vocabulary(directory: DatasetDir, samples: list[Sample]) -> str | None:
    train = [s for s in samples if s.split == "train"]
    if not train:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / VOCABULARY
        GlossVocabulary.from_training_samples(train).save(path)
        directory.write_bytes(VOCABULARY, path.read_bytes())
    return VOCABULARY


def preprocess_dataset(config: PreprocessConfig, *, overwrite: bool = False) -> DatasetResult:
    """Preprocess one corpus (one language) into `<out_dir>/<name>/`."""
    corpus = config.corpus
    name = config.name.format(corpus=corpus.name, language=corpus.language)
    uri = storage_path(config.out_dir).rstrip("/") + "/" + name
    directory = DatasetDir(uri)
    samples_by_split: dict[str, list[Sample]] = {}
    for split in config.splits:
        samples = read_corpus(corpus, split)
        samples_by_split[split] = samples if config.limit is None else samples[: config.limit]
    chash = output_hash(config, corpus_fingerprint(config, samples_by_split))
    result = DatasetResult(name, uri)

    if overwrite:
        directory.remove_all()
    other = _existing_hashes(directory) - {chash}
    if other:
        raise ConfigError(
            f"{uri}: holds shards built with a different config or from a different corpus (hash {sorted(other)}, now {chash}); "
            "pass --overwrite to rebuild, or choose another out_dir/name"
        )
    manifest = _manifest_is_valid(directory, chash)
    if manifest is not None:
        log.info("%s: up to date (manifest with config hash %s)", uri, chash)
        return _up_to_date(result, manifest)

    tasks: list[Task] = []
    for split in config.splits:
        tasks.extend(plan_split(config, split, samples_by_split[split]))
    blocks: dict[tuple[str, int], list[Task]] = collections.defaultdict(list)
    for t in tasks:
        blocks[(t.split, t.block)].append(t)

    receipts: dict[tuple[str, int], BlockReceipt] = {}
    for key in blocks:
        receipt = load_receipt(directory, key[0], key[1], chash)
        if receipt is not None and receipt.videos == len(blocks[key]):
            receipts[key] = receipt
    pending = [t for t in tasks if (t.split, t.block) not in receipts]
    log.info("%s: %d videos in %d blocks; %d blocks already complete, %d videos to process",
             uri, len(tasks), len(blocks), len(receipts), len(pending))

    start = time.perf_counter()
    if pending:
        _ensure_ray(config)
    _write_blocks(config, directory, pending, receipts, result, chash)
    result.seconds = time.perf_counter() - start
    missing = [k for k in blocks if k not in receipts]
    if missing:
        raise RuntimeError(f"{uri}: blocks {missing[:5]} got no results from the pipeline")

    _write_manifest(config, directory, name, chash, blocks, receipts, pending, samples_by_split, result)
    return result


def _up_to_date(result: DatasetResult, manifest: dict) -> DatasetResult:
    """The result of a dataset whose valid manifest says it is complete."""
    result.up_to_date = True
    for split, info in manifest["splits"].items():
        result.splits[split] = SplitSummary(info["videos"], info["written"], info["videos"], info["frames"], info["fatal_errors"], info["warnings"])
    result.error_share = manifest["error_share"]
    result.errors = [ErrorRow(**e) for e in read_errors(result.uri).to_pylist()]
    return result


def _write_blocks(config: PreprocessConfig, directory: DatasetDir, pending: list[Task],
                  receipts: dict[tuple[str, int], BlockReceipt], result: DatasetResult, chash: str) -> None:
    """Run the pipeline over the pending videos and write each block as soon as all its videos are
    back (its receipt goes into `receipts`); counts frames and stage times into `result`."""
    uri = directory.uri
    schema = shard_schema(config.shards.frame_storage, config.keypoints.dtype)
    remaining = collections.Counter((t.split, t.block) for t in pending)
    buffers: dict[tuple[str, int], list[dict]] = collections.defaultdict(list)
    for row in _iter_results(config, pending):
        key = (str(row["split"]), int(row["block"]))
        buffers[key].append(row)
        result.processed_frames += int(row["num_frames"])
        result.decode_seconds += float(row["decode_seconds"])
        result.keypoint_seconds += float(row["keypoint_seconds"])
        remaining[key] -= 1
        if remaining[key] == 0:
            rows = sorted(buffers.pop(key), key=lambda r: int(r["index"]))
            errors = [e for r in rows for e in _row_errors(r)]
            good = [_shard_row(r) for r in rows if not r["error_stage"]]
            receipts[key] = write_block(
                directory, key[0], key[1], good, errors, videos=len(rows), config_hash=chash, schema=schema,
                max_shard_bytes=int(config.shards.max_shard_mb * 2**20), row_group_rows=config.shards.row_group_rows,
                compression=config.shards.compression,
            )
            log.info("%s: block %s-%05d written (%d videos, %d errors)", uri, key[0], key[1], len(good), len(rows) - len(good))


def _write_manifest(config: PreprocessConfig, directory: DatasetDir, name: str, chash: str, blocks: dict,
                    receipts: dict[tuple[str, int], BlockReceipt], pending: list[Task],
                    samples_by_split: dict[str, list[Sample]], result: DatasetResult) -> None:
    """Errors, vocabulary, then the manifest (last, atomically); fills the per-split summaries of `result`."""
    corpus = config.corpus
    split_info: dict[str, dict] = {}
    all_errors: list[ErrorRow] = []
    for split in config.splits:
        keys = sorted(k for k in blocks if k[0] == split)
        summary = SplitSummary()
        shards = []
        for k in keys:
            r = receipts[k]
            summary.videos += r.videos
            summary.written += r.written
            summary.frames += r.frames
            summary.fatal += sum(e.fatal for e in r.errors)
            summary.warnings += sum(not e.fatal for e in r.errors)
            shards.extend(asdict(f) for f in r.files)
            all_errors.extend(r.errors)
        summary.resumed = sum(r.videos for k, r in receipts.items() if k[0] == split) - sum(1 for t in pending if t.split == split)
        result.splits[split] = summary
        split_info[split] = {"videos": summary.videos, "written": summary.written, "frames": summary.frames,
                             "fatal_errors": summary.fatal, "warnings": summary.warnings, "shards": shards}
    directory.write_table(ERRORS, errors_table(all_errors))
    vocabulary = _save_vocabulary(directory, [s for ss in samples_by_split.values() for s in ss])
    total = sum(s.videos for s in result.splits.values())
    result.errors = all_errors
    result.error_share = sum(s.fatal for s in result.splits.values()) / max(1, total)
    directory.write_json(MANIFEST, {
        "format": "signbridge-shards",
        "schema_version": SCHEMA_VERSION,
        "config_hash": chash,
        "config": to_plain(config),
        "dataset": name,
        "corpus": corpus.name,
        "language": corpus.language,
        "keypoint_backend": config.keypoints.backend,
        "keypoint_dtype": config.keypoints.dtype,
        "num_keypoints": NUM_KEYPOINTS,
        "frame_storage": config.shards.frame_storage,
        "splits": split_info,
        "videos": total,
        "error_share": result.error_share,
        "errors": ERRORS,
        "vocabulary": vocabulary,
    })


def expand_languages(config: PreprocessConfig) -> list[PreprocessConfig]:
    """One config per language to preprocess (synthetic corpora have several)."""
    languages = config.languages or [config.corpus.language]
    if languages == ["*"]:
        if config.corpus.format != "synthetic" or not config.corpus.root:
            raise ConfigError("languages: ['*'] works only for the synthetic corpus (format: synthetic, root: ...)")
        try:
            languages = sorted(read_synthetic_manifest(config.corpus.root)["languages"])
        except CorpusFormatError as exc:
            raise ConfigError(str(exc)) from None
    return [config.model_copy(update={"corpus": config.corpus.model_copy(update={"language": lang}), "languages": []}) for lang in languages]


def run(config: PreprocessConfig, *, overwrite: bool = False) -> list[DatasetResult]:
    return [preprocess_dataset(c, overwrite=overwrite) for c in expand_languages(config)]


def summary_table(results: list[DatasetResult]) -> str:
    header = f"{'dataset':<24} {'split':<6} {'videos':>7} {'written':>8} {'resumed':>8} {'frames':>9} {'errors':>7} {'warn':>5} {'seconds':>8} {'frames/s':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        for split, s in r.splits.items():
            lines.append(f"{r.name:<24} {split:<6} {s.videos:>7} {s.written:>8} {s.resumed:>8} {s.frames:>9} {s.fatal:>7} {s.warnings:>5} {'':>8} {'':>9}")
        tot = SplitSummary(*(sum(getattr(s, f) for s in r.splits.values()) for f in ("videos", "written", "resumed", "frames", "fatal", "warnings")))
        rate = r.processed_frames / r.seconds if r.seconds > 0 else 0.0
        status = " (up to date)" if r.up_to_date else ""
        lines.append(f"{r.name:<24} {'all':<6} {tot.videos:>7} {tot.written:>8} {tot.resumed:>8} {tot.frames:>9} {tot.fatal:>7} {tot.warnings:>5} {r.seconds:>8.1f} {rate:>9.1f}{status}")
        if r.processed_frames:
            lines.append(f"{'':<24} worker time: decode {r.decode_seconds:.1f} s, keypoints {r.keypoint_seconds:.1f} s "
                         f"({1000 * r.keypoint_seconds / r.processed_frames:.1f} ms/frame)")
    return "\n".join(lines)


def warning_summary(results: list[DatasetResult], limit: int = 5) -> str:
    lines = []
    for r in results:
        if not r.errors:
            continue
        by_stage = collections.Counter((e.stage, e.fatal) for e in r.errors)
        parts = ", ".join(f"{n} {stage}{'' if fatal else ' warning'}(s)" for (stage, fatal), n in sorted(by_stage.items()))
        lines.append(f"{r.name}: {parts}; error share {r.error_share:.1%} — details in {r.uri}/{ERRORS}")
        for e in r.errors[:limit]:
            lines.append(f"  [{e.split}] {e.name} ({e.stage}{'' if e.fatal else ', repaired'}): {e.message}")
        if len(r.errors) > limit:
            lines.append(f"  ... and {len(r.errors) - limit} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = job_argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--overwrite", action="store_true", help="delete existing shards of these datasets and rebuild")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        config = load_config(PreprocessConfig, args.config, args.overrides)
        results = run(config, overwrite=args.overwrite)
    except (ConfigError, CorpusFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(results))
    warnings = warning_summary(results)
    if warnings:
        log.warning("problems with some videos:\n%s", warnings)
    worst = max((r.error_share for r in results), default=0.0)
    if worst > config.max_error_share:
        print(f"error: {worst:.1%} of the videos failed (max_error_share {config.max_error_share:.1%}); see errors.parquet", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
