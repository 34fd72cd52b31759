"""Isolated-sign dictionary by CTC alignment (Wei & Chen, ICCV 2023): a trained Sign2Gloss checkpoint
aligns every video of a corpus's shards with its gloss annotation and each gloss's frames become a clip.

    python jobs/build_dictionary.py --config configs/dictionary/demo.yaml [key=value ...]

Ray Data runs over the source shard files of the chosen splits (one block per file): an actor pool
holds the model (one GPU per actor where the cluster has GPUs, `resources.gpus_per_actor`), reads a
block, runs the model over its videos (every frame: the checkpoint's evaluation view without its
`max_frames` cap, so output step t covers frames 4t..4t+3 of the model's input), aligns the
annotated glosses (models/ctc_alignment.py: the paper's Algorithm 1, blank frames widened to a
neighbouring gloss that is their best non-blank class, steps -> frames x4 and x the checkpoint's
`frame_stride`), and writes the block's clips (pipelines/dictionary.py has the layout and row
schema) with its receipt, both atomic. Frames and keypoints of a clip are the source row's, copied.

Videos whose labels cannot fit their length (N glosses with r adjacent repeats need N + r output
steps) and videos with glosses the checkpoint does not know are left out and reported: a row each
in `errors.parquet`, counted and named in the statistics. Float32 throughout (the widening rule
compares the log-probabilities of classes).

At the end the statistics (per split: segments, mean clip length, vocabulary, videos left out,
mean confidence) are printed and saved as `statistics.json`; on the synthetic corpus, whose true
sign boundaries are in `signs.<split>.jsonl`, with the mean IoU of the clips against them. The
manifest comes last. Every file is keyed by a hash of the checkpoint's model files, the source
shards (their manifest's hash and files) and the settings: a re-run skips complete blocks; an
output folder holding another key is refused (`overwrite=true` rebuilds it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from tqdm import tqdm

from common.config import ConfigError, StrictModel, config_hash, job_argument_parser, load_config
from models.ctc import min_ctc_length
from models.ctc_alignment import gloss_segments_batch, steps_to_frames
from pipelines.dictionary import (
    FORMAT,
    STATISTICS,
    VERSION,
    clip_ious,
    cut_clips,
    dictionary_schema,
    dictionary_statistics,
    read_shard_rows,
    read_true_signs,
)
from pipelines.recognition_batches import RecognitionCollate
from pipelines.shards import (
    ERRORS,
    MANIFEST,
    PROGRESS,
    BlockReceipt,
    DatasetDir,
    ErrorRow,
    dataset_uri,
    errors_table,
    load_receipt,
    read_manifest,
    write_block,
)
from training.checkpoint import MODEL_DIR, Sign2GlossCheckpoint, load_sign2gloss, resolve_checkpoint
from training.cli import LOG_FORMAT
from training.evaluation import run_model
from training.ray_cluster import ActorResources

log = logging.getLogger("build_dictionary")


class ResourcesSection(ActorResources):
    """Ray resources (actors align blocks in parallel); they never change the output."""

    batch_videos: int = Field(4, ge=1)  # videos per model forward


class DictionaryConfig(StrictModel):
    name: str | None = None  # output folder under out_dir; None: the source dataset's name
    out_dir: str = "outputs/dictionary"
    shards: str  # root of preprocessed datasets (jobs/preprocess.py out_dir)
    dataset: str | None = None  # dataset folder under `shards` (e.g. synthetic-sgsl-a)
    checkpoint: str  # Sign2Gloss checkpoint or run directory (-> its best checkpoint), trained on this language
    splits: list[str] = ["train"]
    head: str = "auto"  # the head whose log-probs are aligned; auto: the one the checkpoint was selected with
    widen: bool = True  # the paper's widening over neighbouring blank frames
    # folder holding signs.<split>.jsonl (true boundaries); "auto": the synthetic corpus the shards
    # were made from, when it is there; None: no IoU
    truth: str | None = "auto"
    max_shard_mb: float = Field(256.0, gt=0)
    overwrite: bool = False
    ray_address: str | None = None
    resources: ResourcesSection = ResourcesSection()

    @property
    def source_uri(self) -> str:
        return dataset_uri(self.shards, self.dataset)

    @property
    def output_uri(self) -> str:
        name = self.name or self.dataset or Path(self.shards.rstrip("/")).name
        return self.out_dir.rstrip("/") + "/" + name


# ---- keys: checkpoint + shards + settings ---------------------------------------------------------------


def checkpoint_fingerprint(checkpoint: str | Path) -> str:
    """sha256 (16 hex) of a checkpoint's model files (weights, config, vocabulary)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in (Path(checkpoint) / MODEL_DIR).rglob("*") if p.is_file()):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def dictionary_key(cfg: DictionaryConfig, checkpoint: Path, manifest: dict, head: str) -> str:
    """What the dictionary's content depends on: the checkpoint's model files, the source shards
    (their config hash and the files of the chosen splits) and the alignment settings."""
    shards = {s: [(f["path"], f["bytes"]) for f in manifest["splits"][s]["shards"]] for s in cfg.splits}
    settings = cfg.model_copy(update={"out_dir": "", "name": None, "shards": "", "checkpoint": "", "truth": None,
                                      "overwrite": False, "ray_address": None,
                                      "resources": ResourcesSection(batch_videos=cfg.resources.batch_videos)})
    return config_hash(settings, extra={"checkpoint": checkpoint_fingerprint(checkpoint), "head": head,
                                        "shards": {"config_hash": manifest.get("config_hash"), "files": shards}})


def alignment_head(ck: Sign2GlossCheckpoint, head: str) -> str:
    """`head`, or with "auto" the head the checkpoint was selected with on dev (else its decode head)."""
    heads = ck.model.config.decodable_heads
    chosen = (ck.metrics.get("dev_head") or ck.model.decode_head) if head == "auto" else head
    if chosen not in heads:
        raise ConfigError(f"head {head!r}: the checkpoint's model {ck.path} has heads {heads}")
    return chosen


# ---- aligning shard rows --------------------------------------------------------------------------------


def alignment_collate(ck: Sign2GlossCheckpoint) -> RecognitionCollate:
    """The checkpoint's evaluation view over every frame (no max_frames resampling, no trailing cut)."""
    view = ck.collate.model_copy(update={"max_frames": None, "eval_length_multiple": 1})
    return RecognitionCollate(view, train=False, glosses=ck.vocab.glosses, frame_stride=ck.frame_stride)


def known_rows(rows: list[dict], vocab) -> tuple[list[dict], list[ErrorRow]]:
    """Rows whose every gloss the checkpoint knows; an error row for each other one."""
    keep, errors = [], []
    for r in rows:
        glosses = str(r["gloss"] or "").split()
        unknown = sorted({g for g in glosses if g not in vocab})
        if not glosses:
            errors.append(ErrorRow(str(r["name"]), str(r["split"]), "no_glosses", "empty gloss annotation"))
        elif unknown:
            errors.append(ErrorRow(str(r["name"]), str(r["split"]), "unknown_gloss",
                                   f"glosses not in the checkpoint's vocabulary: {unknown}"))
        else:
            keep.append(r)
    return keep, errors


def align_rows(ck: Sign2GlossCheckpoint, rows: list[dict], *, head: str, widen: bool,
               device: torch.device) -> tuple[list[dict], list[ErrorRow]]:
    """Source shard rows (one model batch) -> their clips (pipelines.dictionary.cut_clips) and an
    error row for each video left out (unknown glosses, labels that cannot fit its output steps)."""
    rows, errors = known_rows(rows, ck.vocab)
    if not rows:
        return [], errors
    batch = alignment_collate(ck)(rows)
    with torch.no_grad():
        out = run_model(ck.model, batch, device, ck.uses_keypoints)
    lp = out["log_probs"][head].float().cpu()  # the alignment runs on the host (numba)
    steps, labels, n_labels = out["lengths"].cpu(), batch["labels"], batch["label_lengths"]
    need = min_ctc_length(labels, n_labels).clamp(min=1)
    for i in torch.nonzero(steps < need).flatten().tolist():
        errors.append(ErrorRow(str(rows[i]["name"]), str(rows[i]["split"]), "unfittable",
                               f"{int(n_labels[i])} glosses ({int(need[i] - n_labels[i])} adjacent repeats) need at least "
                               f"{int(need[i])} output steps; its {int(rows[i]['num_frames'])} frames give {int(steps[i])}"))
    fit = torch.nonzero(steps >= need).flatten()
    if not len(fit):
        return [], errors
    segments, _ = gloss_segments_batch(lp[fit], steps[fit], labels[fit], n_labels[fit], widen=widen)
    frames = steps_to_frames(segments, steps[fit], batch["frame_lengths"][fit])  # in the model's (subsampled) frames
    clips = []
    for j, i in enumerate(fit.tolist()):
        n, row = int(n_labels[i]), rows[i]
        spans = np.minimum(frames[j, :n] * ck.frame_stride, int(row["num_frames"]))
        probs = lp[i, :, labels[i, :n]].exp()  # (T', n)
        confidence = [float(probs[a:e, k].mean()) for k, (a, e) in enumerate(segments[j, :n].tolist())]
        clips.extend(cut_clips(row, str(row["gloss"]).split(), spans, confidence))
    return clips, errors


class BlockAligner:
    """Ray Data actor: holds the checkpoint's model; each input item (split, block, uri, videos) is a
    source shard file, aligned and written as that block of the dictionary (clips + receipt)."""

    def __init__(self, checkpoint: str, head: str, widen: bool, out_uri: str, key: str, schema: dict, max_shard_bytes: int,
                 batch_videos: int, torch_threads: int | None):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if torch_threads and self.device.type == "cpu":
            torch.set_num_threads(torch_threads)
        self.ck = load_sign2gloss(checkpoint, map_location=self.device)
        self.ck.model.to(self.device)
        self.head, self.widen, self.key = head, widen, key
        self.out, self.schema = DatasetDir(out_uri), dictionary_schema(**schema)
        self.max_shard_bytes, self.batch_videos = max_shard_bytes, batch_videos

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        receipts = []
        for split, block, uri in zip(batch["split"], batch["block"], batch["uri"]):
            rows = read_shard_rows(str(uri))
            clips, errors = [], []
            for k in range(0, len(rows), self.batch_videos):
                c, e = align_rows(self.ck, rows[k : k + self.batch_videos], head=self.head, widen=self.widen, device=self.device)
                clips += c
                errors += e
            receipt = write_block(self.out, str(split), int(block), clips, errors, videos=len(rows), config_hash=self.key,
                                  schema=self.schema, max_shard_bytes=self.max_shard_bytes)
            receipts.append(json.dumps(asdict(receipt)))
        return {"receipt": np.array(receipts, dtype=object)}


# ---- driver ---------------------------------------------------------------------------------------------


def existing_keys(directory: DatasetDir) -> set[str]:
    """Keys of whatever an earlier run left in the folder (manifest and block receipts)."""
    import pyarrow.fs as pafs

    keys = set()
    if directory.exists(MANIFEST):
        keys.add(json.loads(directory.read_text(MANIFEST)).get("key"))
    progress = directory.full(PROGRESS)
    if directory.fs.get_file_info(progress).type == pafs.FileType.Directory:
        for info in directory.fs.get_file_info(pafs.FileSelector(progress)):
            if info.path.endswith(".json"):
                with directory.fs.open_input_stream(info.path) as f:
                    keys.add(json.loads(f.read()).get("config_hash"))
    return keys


def plan_blocks(cfg: DictionaryConfig, manifest: dict, directory: DatasetDir,
                key: str) -> tuple[list[dict], dict[tuple[str, int], BlockReceipt]]:
    """Every source shard file of the chosen splits: the ones still to align (split, block, uri,
    videos) and the receipts of those complete from an earlier run."""
    source = DatasetDir(cfg.source_uri)
    pending, done = [], {}
    for split in cfg.splits:
        if split not in manifest["splits"]:
            raise ConfigError(f"{cfg.source_uri}: split {split!r} was not preprocessed (have {sorted(manifest['splits'])})")
        for block, f in enumerate(manifest["splits"][split]["shards"]):
            receipt = load_receipt(directory, split, block, key)
            if receipt is not None and receipt.videos == f["rows"]:
                done[(split, block)] = receipt
            else:
                pending.append({"split": split, "block": block, "uri": source.uri_of(f["path"]), "videos": f["rows"]})
    return pending, done


def align_blocks(cfg: DictionaryConfig, checkpoint: Path, head: str, key: str, manifest: dict,
                 pending: list[dict]) -> list[BlockReceipt]:
    """Run the actor pool over the pending blocks; their receipts, as each block is written."""
    import ray
    from ray.data import ActorPoolStrategy

    from training.ray_cluster import init_ray

    init_ray(cfg.ray_address)
    res = cfg.resources
    gpus = res.gpus_per_actor if ray.cluster_resources().get("GPU", 0) > 0 else 0
    schema = {"frame_storage": manifest.get("frame_storage", "jpeg"), "keypoint_dtype": manifest.get("keypoint_dtype", "float16")}
    ds = ray.data.from_items(pending, override_num_blocks=len(pending)).map_batches(
        BlockAligner, batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=res.actors), num_cpus=res.cpus_per_actor,
        num_gpus=gpus, fn_constructor_kwargs={
            "checkpoint": str(checkpoint), "head": head, "widen": cfg.widen, "out_uri": cfg.output_uri, "key": key,
            "schema": schema, "max_shard_bytes": int(cfg.max_shard_mb * 2**20), "batch_videos": res.batch_videos,
            "torch_threads": res.torch_threads})
    receipts = []
    for row in tqdm(ds.iter_rows(), total=len(pending), desc="aligning blocks", unit="block"):
        receipts.append(BlockReceipt.from_json(json.loads(row["receipt"])))
    return receipts


def truth_folder(cfg: DictionaryConfig, manifest: dict) -> Path | None:
    """Where signs.<split>.jsonl are: `truth`, or for "auto" the synthetic corpus the shards came from."""
    if cfg.truth is None:
        return None
    if cfg.truth != "auto":
        return Path(cfg.truth)
    corpus = (manifest.get("config") or {}).get("corpus") or {}
    if corpus.get("format") != "synthetic" or not corpus.get("root"):
        return None
    folder = Path(corpus["root"]) / str(manifest.get("language") or corpus.get("language"))
    if not folder.is_dir():
        log.info("no true boundaries: %s (the shards' synthetic corpus) is not here; set truth= to its language folder", folder)
        return None
    return folder


def statistics(cfg: DictionaryConfig, manifest: dict, receipts: list[BlockReceipt]) -> dict:
    """The dictionary's statistics (pipelines.dictionary.dictionary_statistics), with the IoU
    against the true boundaries where they are found."""
    clips = read_dictionary_table_from_receipts(cfg.output_uri, receipts)
    errors = [asdict(e) for r in receipts for e in r.errors]
    videos = {s: manifest["splits"][s]["written"] for s in cfg.splits}
    folder, ious = truth_folder(cfg, manifest), None
    if folder is not None:
        ious = {}
        for split in cfg.splits:
            path = folder / f"signs.{split}.jsonl"
            if not path.exists():
                raise FileNotFoundError(f"{path}: true sign boundaries not found (truth={cfg.truth!r})")
            ious[split], problems = clip_ious([c for c in clips if c["split"] == split], read_true_signs(path))
            if problems:
                raise ValueError(f"{path}: the true boundaries do not match the dictionary's videos: " + "; ".join(problems[:5]))
    stats = dictionary_statistics(clips, errors, videos, ious)
    return {"splits": stats, "truth": str(folder) if folder else None}


def read_dictionary_table_from_receipts(uri: str, receipts: list[BlockReceipt]) -> list[dict]:
    """The clips' small columns from the receipts' files (before the manifest exists)."""
    import pyarrow.parquet as pq

    from pipelines.dictionary import SMALL_COLUMNS

    directory, rows = DatasetDir(uri), []
    for r in receipts:
        for f in r.files:
            with directory.fs.open_input_file(directory.full(f.path)) as fh:
                rows += pq.read_table(fh, columns=SMALL_COLUMNS).to_pylist()
    return rows


def write_outputs(cfg: DictionaryConfig, directory: DatasetDir, *, key: str, checkpoint: Path, head: str, manifest: dict,
                  receipts: dict[tuple[str, int], BlockReceipt], stats: dict) -> dict:
    """errors.parquet, statistics.json, then the manifest (last)."""
    ordered = [receipts[k] for k in sorted(receipts)]
    directory.write_table(ERRORS, errors_table(e for r in ordered for e in r.errors))
    directory.write_json(STATISTICS, stats)
    splits = {}
    for split in cfg.splits:
        mine = [r for r in ordered if r.split == split]
        splits[split] = {"videos": sum(r.videos for r in mine), "clips": sum(r.written for r in mine),
                         "frames": sum(r.frames for r in mine), "left_out": sum(len(r.errors) for r in mine),
                         "shards": [asdict(f) for r in mine for f in r.files]}
    out = {"format": FORMAT, "version": VERSION, "key": key, "checkpoint": str(checkpoint), "head": head, "widen": cfg.widen,
           "source": cfg.source_uri, "source_config_hash": manifest.get("config_hash"), "corpus": manifest.get("corpus"),
           "language": manifest.get("language"), "frame_storage": manifest.get("frame_storage", "jpeg"),
           "keypoint_backend": manifest.get("keypoint_backend"), "splits": splits, "statistics": STATISTICS, "errors": ERRORS}
    directory.write_json(MANIFEST, out)
    return out


def statistics_table(stats: dict) -> str:
    """The statistics as a plain-text table (one line per split)."""
    cols = ["videos", "aligned_videos", "unfittable_videos", "other_errors", "segments", "mean_length", "vocabulary",
            "mean_confidence", "mean_iou"]
    lines = [f"{'split':<8}" + "".join(f"{c:>18}" for c in cols)]
    for split, s in stats["splits"].items():
        cells = [s.get(c) for c in cols]
        lines.append(f"{split:<8}" + "".join(f"{'-' if v is None else (f'{v:.3f}' if isinstance(v, float) else v):>18}" for v in cells))
    return "\n".join(lines)


def run(cfg: DictionaryConfig) -> dict:
    """Build (or resume, or find up to date) the dictionary; print and return its statistics with
    where it is, its key, and how many blocks this call aligned."""
    t0 = time.time()
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    manifest = read_manifest(cfg.shards, cfg.dataset)
    head = alignment_head(load_sign2gloss(checkpoint), cfg.head)
    key = dictionary_key(cfg, checkpoint, manifest, head)
    directory = DatasetDir(cfg.output_uri)
    if cfg.overwrite:
        directory.remove_all()
    other = existing_keys(directory) - {key}
    if other:
        raise ConfigError(f"{cfg.output_uri}: holds a dictionary built from another checkpoint, other shards or other settings "
                          f"(key {sorted(other)}, now {key}); pass overwrite=true to rebuild it, or choose another out_dir/name")
    pending, done = plan_blocks(cfg, manifest, directory, key)
    log.info("%s: %d blocks, %d complete from an earlier run, %d to align (checkpoint %s, head %s)", cfg.output_uri,
             len(pending) + len(done), len(done), len(pending), checkpoint, head)
    if pending or not directory.exists(MANIFEST):
        for r in align_blocks(cfg, checkpoint, head, key, manifest, pending) if pending else []:
            done[(r.split, r.block)] = r
        stats = statistics(cfg, manifest, list(done.values()))
        write_outputs(cfg, directory, key=key, checkpoint=checkpoint, head=head, manifest=manifest, receipts=done, stats=stats)
    else:
        stats = json.loads(directory.read_text(STATISTICS))
    print(statistics_table(stats))
    return {"dictionary": cfg.output_uri, "key": key, "language": manifest.get("language"), "checkpoint": str(checkpoint),
            "head": head, "blocks_aligned": len(pending), "blocks_reused": len(done) - len(pending),
            "statistics": stats, "wall_s": time.time() - t0}


def main(argv: list[str] | None = None) -> dict:
    args = job_argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    summary = run(load_config(DictionaryConfig, args.config, args.overrides))
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
