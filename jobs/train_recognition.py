"""Sign2Gloss (continuous sign language recognition) training on Ray Train: SingleStream-SLR or
TwoStream-SLR (models/two_stream.py) with CTC on preprocessed Parquet shards.

    python jobs/train_recognition.py --config configs/recognition/demo_single_stream.yaml [key=value ...]

The driver reads the shards' manifest (jobs/preprocess.py output), copies the training split's
gloss vocabulary into `<out_dir>/<name>/assets/`, and runs `TorchTrainer` with the train and dev
splits as Ray Datasets. Each worker streams its share of the training split through
`VideoCollate(train=True)` (the papers' augmentation; clips drawn `data.length_buckets` batches
at a time are batched by length, so less padding is computed; with `data.cache_train` the rows of
the first epoch stay in memory with decoded frames and later epochs replay them) and trains with
Adam (betas 0.9, 0.998, weight decay 1e-3), a cosine schedule (optional warm-up), gradient
clipping, bf16 autocast on CUDA only, DDP when there is more than one worker. Samples whose gloss
sequence cannot fit the model's output length are left out of the CTC loss and counted
(`train_infeasible` per epoch).

Every epoch dev is decoded (greedy by default, `decode.dev_beam_width`) for every head (rgb,
keypoint, fuse, ensemble, as the model has them), the WER of each is reported with a checkpoint
(`ray.train.report`), and `dev_wer` is the WER of the selected head (`train.select_head`; `auto`: the
head with the lowest dev WER in that epoch, recorded as `dev_head`). Ray keeps the best checkpoints by
`dev_wer` and always the latest. Re-running the same command resumes from the latest checkpoint and
never repeats a finished epoch. With `train.max_minutes` the cosine schedule is planned over the
epochs that fit in the budget (re-estimated every epoch) and training stops before passing it. At the
end the best checkpoint is decoded on dev with `decode.beam_width` (jobs/evaluate.py --task s2g).

Run directory: `assets/` (gloss_vocab.json), `checkpoint_*/` (Ray), `metrics.jsonl` (one line per
epoch), `learning_curve.png`, `best_checkpoint.json`, `eval_dev/` (final hypotheses and scores).
Checkpoint layout: `model/` (`weights.pt`, `config.json`: the TwoStreamConfig), `gloss_vocab.json`,
`config.yaml` (the resolved run config), `train_state.pt` (optimizer, scheduler, epoch, RNG, history),
`metrics.json` (that epoch's metrics).
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import random
import sys
import tempfile
import threading
import time
import zlib
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from ray.data.collate_fn import NumpyBatchCollateFn

from jobs.config import StrictModel, job_argument_parser, load_config, save_config
from pipelines.video_collate import VideoCollate, VideoCollateConfig, _rows, predecode_row
from pipelines.vocabulary import GlossVocabulary

log = logging.getLogger("train_recognition")

ONEDNN_KERNEL_CACHE = 8192  # oneDNN primitive cache capacity of CPU training workers

HeadChoice = Literal["auto", "rgb", "keypoint", "fuse", "ensemble"]


# ---- configuration ------------------------------------------------------------------------------


class DataSection(StrictModel):
    shards: str  # root folder of preprocessed datasets (jobs/preprocess.py out_dir)
    dataset: str | None = None  # dataset folder under `shards` (e.g. synthetic-sgsl-a); None: `shards` itself
    train_split: str = "train"
    dev_split: str = "dev"
    frame_stride: int = Field(1, ge=1)  # keep every n-th stored frame before the collate (temporal subsampling)
    collate: VideoCollateConfig = VideoCollateConfig()
    shuffle_buffer: int = Field(64, ge=0)  # rows in Ray Data's local shuffle buffer (0: corpus order)
    cache_dev: bool = True  # each worker keeps its share of the dev rows (JPEG bytes) in memory after epoch 1
    # each worker keeps the training rows of its first epoch in memory, frames decoded (and shrunk to
    # `cache_size` px on the longer side, None: as stored); later epochs reshuffle them locally
    # instead of re-reading the shards. For corpora that fit in RAM (the demo: ~0.6 GB at 64 px).
    cache_train: bool = False
    cache_size: int | None = Field(None, ge=8)
    length_buckets: int = Field(1, ge=1)  # draw this many batches' clips at once and batch them by length
    train_limit: int | None = None  # first N videos only (tests, smoke runs)
    dev_limit: int | None = None


class OptimSection(StrictModel):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.998)
    eps: float = 1e-8
    weight_decay: float = 1e-3  # Adam's L2 term, as the papers' code
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max gradient norm; 0 = off


class PretrainedSection(StrictModel):
    """Public-layout S3D checkpoints (Kinetics-400 `S3D_kinetics400.pt`, the papers' WLASL or
    Sign2Gloss checkpoints) loaded strictly into the backbones of a fresh run (not on resume);
    they need model.width 1.0. The keypoint stream keeps its own first conv (K heatmap channels)."""

    rgb_s3d: str | None = None
    keypoint_s3d: str | None = None
    rgb_prefix: str | None = None  # key prefix inside the checkpoint; None: detected (must be unique)
    keypoint_prefix: str | None = None
    # The papers' TwoStream recipe: each stream starts from a SingleStream Sign2Gloss model trained
    # first on the same corpus. A run directory (-> its best checkpoint) or checkpoint of this job
    # whose model has that stream, the same sizes and the same gloss vocabulary; the stream's S3D,
    # head and (if both have them) sign pyramid and auxiliary heads are copied.
    # (One source per stream is checked in RecognitionConfig: a model_validator on this section made
    # Ray workers fail to unpickle the training function, pydantic "Error building function-after".)
    rgb_stream: str | None = None
    keypoint_stream: str | None = None
    # Learning-rate factor for the parameters of every stream set above (its S3D; with *_stream also
    # its head, pyramid and auxiliary heads). Below 1, a copied stream keeps what it learned while
    # the new parts (the other stream, laterals, fuse head) catch up.
    lr_scale: float = Field(1.0, gt=0)


class TrainSection(StrictModel):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(2, ge=1)  # clips per batch and worker
    seed: int = 0
    num_threads: int | None = 1  # torch intra-op threads per CPU worker (1: see docs/PERFORMANCE.md); None: torch's default
    max_minutes: float | None = None  # time budget of the training loop (see module docstring)
    select_head: HeadChoice = "auto"  # the head whose dev WER picks the best checkpoint
    find_unused_parameters: bool = False  # DDP
    prefetch_batches: int = Field(1, ge=0)
    # The KL weight (model.distill_weight) ramps linearly from 0 over this many epochs: the ensemble
    # teacher is only as good as its worst head, and a stream copied from a trained model
    # (pretrained.*_stream) would otherwise be pulled towards untrained heads' outputs.
    distill_warmup_epochs: float = Field(0.0, ge=0)


class DecodeSection(StrictModel):
    beam_width: int = Field(5, ge=1)  # final / test evaluation (CTC prefix beam search)
    dev_beam_width: int = Field(1, ge=1)  # per-epoch dev decoding (1 = greedy)
    batch_size: int = Field(4, ge=1)


class ScalingSection(StrictModel):
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 0
    num_to_keep: int = 2  # checkpoints kept by dev WER (the latest is always kept too)


class RecognitionConfig(StrictModel):
    name: str
    out_dir: str = "outputs/recognition"
    data: DataSection
    model: dict[str, Any] = {}  # TwoStreamConfig fields except num_classes (set from the vocabulary)
    pretrained: PretrainedSection = PretrainedSection()
    optim: OptimSection = OptimSection()
    train: TrainSection = TrainSection()
    decode: DecodeSection = DecodeSection()
    scaling: ScalingSection = ScalingSection()
    final_eval: bool = True  # decode dev with the best checkpoint and `decode.beam_width` at the end

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: dict[str, Any]) -> dict[str, Any]:
        from models.two_stream import TwoStreamConfig

        if "num_classes" in value:
            raise ValueError("num_classes is set from the gloss vocabulary; leave it out")
        TwoStreamConfig.model_validate({**value, "num_classes": 3})
        return value

    @model_validator(mode="after")
    def _check_head(self) -> "RecognitionConfig":
        heads = self.head_names()
        if self.train.select_head != "auto" and self.train.select_head not in heads:
            raise ValueError(f"train.select_head {self.train.select_head!r}: the model's heads are {heads}")
        for stream in ("rgb", "keypoint"):
            if getattr(self.pretrained, f"{stream}_s3d") and getattr(self.pretrained, f"{stream}_stream"):
                raise ValueError(f"pretrained: set {stream}_s3d or {stream}_stream, not both")
        return self

    def model_config_for(self, num_classes: int):
        from models.two_stream import TwoStreamConfig

        return TwoStreamConfig.model_validate({**self.model, "num_classes": num_classes})

    def head_names(self) -> list[str]:
        """Decodable heads: the model's heads, plus `ensemble` when it has several."""
        heads = self.model_config_for(3).head_names
        return heads + (["ensemble"] if len(heads) > 1 else [])

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def uses_keypoints(self) -> bool:
        return "keypoint" in self.model_config_for(3).streams


def absolute_paths(cfg: RecognitionConfig) -> RecognitionConfig:
    """Local paths resolved against the current directory (Ray workers may run elsewhere)."""
    cfg = cfg.model_copy(deep=True)
    cfg.out_dir = str(Path(cfg.out_dir).resolve())
    if "://" not in cfg.data.shards:
        cfg.data.shards = str(Path(cfg.data.shards).resolve())
    for field in ("rgb_s3d", "keypoint_s3d", "rgb_stream", "keypoint_stream"):
        if getattr(cfg.pretrained, field):
            setattr(cfg.pretrained, field, str(Path(getattr(cfg.pretrained, field)).resolve()))
    return cfg


# ---- data: rows of the shards -> model batches ----------------------------------------------------


def shard_columns(with_keypoints: bool) -> list[str]:
    cols = ["name", "gloss", "frames", "num_frames", "height", "width"]
    return cols + (["keypoints"] if with_keypoints else [])


def subsample_row(row: dict, stride: int) -> dict:
    """Keep every `stride`-th frame (and keypoint row) of one shard row."""
    if stride == 1:
        return row
    row = dict(row)
    row["frames"] = row["frames"][::stride]
    if row.get("keypoints") is not None and len(row["keypoints"]):
        row["keypoints"] = np.asarray(row["keypoints"])[::stride]
    row["num_frames"] = len(row["frames"])
    return row


class RecognitionCollate(NumpyBatchCollateFn):
    """Shard rows (Ray's numpy column dict or a list of row dicts) -> VideoCollate's batch plus
    `labels` (B, L) gloss ids padded with pad_id, `label_lengths` (B,) and `unknown_glosses`
    (tokens not in the vocabulary, mapped to <unk>)."""

    def __init__(self, config: VideoCollateConfig, *, train: bool, glosses: list[str], frame_stride: int = 1,
                 generator: int | None = None):
        self.video = VideoCollate(config, train=train, generator=generator)
        self.glosses = list(glosses)
        self.frame_stride = frame_stride
        self._vocab: GlossVocabulary | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_vocab": None}

    @property
    def vocab(self) -> GlossVocabulary:
        if self._vocab is None:
            self._vocab = GlossVocabulary(self.glosses)
        return self._vocab

    def prepare(self, batch: Any) -> list[dict]:
        """Ray's column dict or a list of rows -> rows with `frame_stride` applied."""
        return [subsample_row(r, self.frame_stride) for r in _rows(batch)]

    def bucketed(self, rows: list[dict], batch_size: int, order_seed: int | None = None) -> Iterator[dict]:
        """Batches of `batch_size` from prepared `rows` (several batches' worth): each clip's
        augmentation is drawn first, clips of similar output length are batched together (less
        padding) and the batches come in random order, drawn from `order_seed` when given (DDP
        workers passing the same seed step through their k-th shortest batches together)."""
        plans = self.video.plan(rows)
        order = sorted(range(len(rows)), key=lambda i: len(plans[i]["indices"]))
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        rng = self.video.rng if order_seed is None else np.random.default_rng(order_seed)
        for k in rng.permutation(len(chunks)):
            chunk = chunks[k]
            yield self.collate_prepared([rows[i] for i in chunk], [plans[i] for i in chunk])

    def __call__(self, batch: Any) -> dict[str, Any]:
        return self.collate_prepared(self.prepare(batch))

    def collate_prepared(self, rows: list[dict], plans: list[dict] | None = None) -> dict[str, Any]:
        out = self.video(rows, plans)
        vocab = self.vocab
        unknown_before = sum(vocab.unknown_counts.values())
        ids = [vocab.encode(g.split()) for g in out["glosses"]]
        lengths = [len(x) for x in ids]
        labels = torch.full((len(ids), max([1, *lengths])), vocab.pad_id, dtype=torch.int64)
        for i, x in enumerate(ids):
            labels[i, : len(x)] = torch.tensor(x, dtype=torch.int64)
        out["labels"] = labels
        out["label_lengths"] = torch.tensor(lengths, dtype=torch.int64)
        out["unknown_glosses"] = sum(vocab.unknown_counts.values()) - unknown_before
        return out


def train_batches(shard, collate: RecognitionCollate, cfg: RecognitionConfig, cache: list[dict] | None, *,
                  replay: bool, shuffle_seed: int, order_seed: int) -> Iterator[dict]:
    """One epoch of training batches for this worker. Rows come from the Ray Data shard (local
    shuffle buffer), or with `replay` from `cache` in a fresh random order; otherwise a non-None
    `cache` is filled with the epoch's rows, frames decoded (`predecode_row`). Rows are drawn
    `data.length_buckets` batches at a time and batched by augmented length
    (`RecognitionCollate.bucketed`; `order_seed`, the same on every worker, orders the batches)."""
    batch_size = cfg.train.batch_size
    group = batch_size * cfg.data.length_buckets

    def row_groups() -> Iterator[list[dict]]:
        if replay:
            order = collate.video.rng.permutation(len(cache))
            for i in range(0, len(order), group):
                yield [cache[j] for j in order[i : i + group]]
            return
        for batch in shard.iter_batches(batch_size=group, batch_format="numpy",
                                        local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
                                        local_shuffle_seed=shuffle_seed if cfg.data.shuffle_buffer else None):
            rows = collate.prepare(batch)
            if cache is not None:
                rows = [predecode_row(r, cfg.data.cache_size) for r in rows]
                cache.extend(rows)
            yield rows

    for i, rows in enumerate(row_groups()):
        yield from collate.bucketed(rows, batch_size, order_seed=order_seed * 100_003 + i)


def prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """`items` produced by a background thread up to `depth` ahead (0: inline). Decoding, resizing
    and torch ops release the GIL, so the collate overlaps the training step. A consumer that stops
    early (an error in the step, `close()`) stops the thread too: it drops what it holds and exits
    (waited for up to 1 s)."""
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(depth)
    end, stop = object(), threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as e:  # re-raised in the consumer
            put(e)

    thread = threading.Thread(target=produce, daemon=True, name="train-batches")
    thread.start()
    try:
        while (item := slots.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # bounded: a producer stuck in the data source (e.g. a streaming split waiting for a dead
        # worker) must not hold up the consumer's error
        thread.join(timeout=1.0)


def in_share(name: str, rank: int, world: int) -> bool:
    """A stable partition of an evaluation split over workers (by name, whatever the row order)."""
    return world == 1 or zlib.crc32(name.encode("utf-8")) % world == rank


def eval_batches(batches: Iterable[dict], collate: RecognitionCollate, batch_size: int, rank: int = 0,
                 world: int = 1) -> Iterator[dict]:
    """Ray numpy batches of an evaluation split -> collated batches of this worker's share."""
    pending: list[dict] = []
    for batch in batches:
        pending.extend(r for r in _rows(batch) if in_share(str(r["name"]), rank, world))
        while len(pending) >= batch_size:
            yield collate(pending[:batch_size])
            pending = pending[batch_size:]
    if pending:
        yield collate(pending)


# ---- decoding + scoring (shared with jobs/evaluate.py) --------------------------------------------


def decode_heads(outputs: dict, heads: list[str], beam_width: int) -> dict[str, list[list[int]]]:
    from models.ctc import beam_search_decode, greedy_decode

    result = {}
    for head in heads:
        lp = outputs["log_probs"][head]
        if beam_width > 1:
            result[head] = beam_search_decode(lp, outputs["lengths"], beam_width=beam_width)
        else:
            result[head] = greedy_decode(lp, outputs["lengths"])
    return result


def run_model(model, batch: dict, device: torch.device, uses_keypoints: bool):
    return model(batch["frames"].to(device, non_blocking=True), batch["frame_lengths"].to(device),
                 batch["keypoints"].to(device, non_blocking=True) if uses_keypoints else None)


def decode_split(model, batches: Iterable[dict], heads: list[str], *, beam_width: int, device: torch.device,
                 uses_keypoints: bool, vocab: GlossVocabulary) -> dict:
    """Decode every head on the batches. Returns names, references (as annotated), hypotheses per
    head (gloss lists), count of infeasible samples (label longer than the output allows),
    unknown reference glosses, clips."""
    from models.ctc import min_ctc_length

    model.eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    names, refs, hyps = [], [], {h: [] for h in heads}
    infeasible = unknown = 0
    with torch.no_grad():
        for batch in batches:
            with autocast:
                out = run_model(model, batch, device, uses_keypoints)
            decoded = decode_heads(out, heads, beam_width)
            for h in heads:
                hyps[h].extend(vocab.decode(ids) for ids in decoded[h])
            names.extend(batch["names"])
            refs.extend(batch["glosses"])
            infeasible += int((min_ctc_length(batch["labels"], batch["label_lengths"]) > out["lengths"].cpu()).sum())
            unknown += int(batch["unknown_glosses"])
    return {"names": names, "refs": refs, "hyps": hyps, "infeasible": infeasible, "unknown_glosses": unknown}


def score_heads(refs: list[str], hyps: dict[str, list[list[str]]], corpus: str) -> dict[str, dict]:
    """Corpus WER (sclite costs) per head after the corpus' gloss clean-up."""
    from metrics.gloss_cleanup import cleanup_for
    from metrics.wer import corpus_wer

    clean = cleanup_for(corpus)
    clean_refs = [clean(r) for r in refs]
    out = {}
    for head, hs in hyps.items():
        res = corpus_wer(clean_refs, [clean(list(h)) for h in hs])
        out[head] = {"wer": res.wer, "sub": res.substitutions, "del": res.deletions, "ins": res.insertions,
                     "ref_tokens": res.ref_tokens, "sentences": res.num_sentences}
    return out


def choose_head(wers: dict[str, float], select: str) -> str:
    if select != "auto":
        return select
    return min(wers, key=lambda h: (wers[h], h))


STREAM_PARTS = ("backbones", "heads", "pyramids", "aux_heads")  # TwoStreamSLR's per-stream modules


def distill_factor(step: int, warmup_steps: float) -> float:
    """Multiplier of the KL weight at optimizer step `step` (0-based): linear from 1/warmup_steps to 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def pretrained_parameter_names(model: torch.nn.Module, pretrained: PretrainedSection) -> set[str]:
    """Parameters that start from a checkpoint given in `pretrained` (decided by the config alone, so
    a resumed run rebuilds the same optimizer groups): `backbones.<stream>.*` for *_s3d, and every
    per-stream part (STREAM_PARTS) for *_stream."""
    prefixes = []
    for stream in ("rgb", "keypoint"):
        if getattr(pretrained, f"{stream}_stream"):
            prefixes += [f"{part}.{stream}." for part in STREAM_PARTS]
        elif getattr(pretrained, f"{stream}_s3d"):
            prefixes.append(f"backbones.{stream}.")
    return {n for n, _ in model.named_parameters() if prefixes and n.startswith(tuple(prefixes))}


def make_optimizer(model: torch.nn.Module, cfg: RecognitionConfig) -> torch.optim.Adam:
    """Adam over the trainable parameters: one group at `optim.lr`, plus one at
    `optim.lr * pretrained.lr_scale` for the pretrained streams' parameters when that scale is not 1."""
    o = cfg.optim
    pre = pretrained_parameter_names(model, cfg.pretrained) if cfg.pretrained.lr_scale != 1 else set()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if n not in pre]}]
    if pre:
        groups.append({"params": [p for n, p in named if n in pre], "lr": o.lr * cfg.pretrained.lr_scale})
    return torch.optim.Adam(groups, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, foreach=True)


def lr_factor(step: int, total_steps: int, optim: OptimSection) -> float:
    """Multiplier of `optim.lr` at optimizer step `step` (0-based): linear warm-up, then cosine
    (to `min_lr_ratio`) or constant."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - optim.warmup_steps) / max(1, total_steps - optim.warmup_steps))
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ---- model io -------------------------------------------------------------------------------------


def load_pretrained_backbones(model: torch.nn.Module, pretrained: PretrainedSection) -> dict[str, list[str]]:
    """Load the configured S3D checkpoints into the model's streams; returns, per stream, the
    checkpoint layers beyond the model (e.g. block 5 and the Kinetics classifier), dropped."""
    from models.s3d import load_s3d_checkpoint

    dropped = {}
    for stream, path, prefix in [("rgb", pretrained.rgb_s3d, pretrained.rgb_prefix),
                                 ("keypoint", pretrained.keypoint_s3d, pretrained.keypoint_prefix)]:
        if path is None:
            continue
        if stream not in model.backbones:
            raise ValueError(f"pretrained.{stream}_s3d is set but the model has no {stream} stream")
        exclude = ("block1.conv.conv_s.weight",) if stream == "keypoint" else ()
        try:
            dropped[stream] = load_s3d_checkpoint(model.backbones[stream], path, prefix=prefix, exclude=exclude)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"pretrained.{stream}_s3d {path}: {e}") from e
    return dropped


def load_pretrained_streams(model: torch.nn.Module, pretrained: PretrainedSection, glosses: list[str]) -> dict[str, list[str]]:
    """Copy streams from Sign2Gloss checkpoints of this job (`pretrained.{rgb,keypoint}_stream`).

    Per stream, the S3D (`backbones.<stream>.*`) and the head (`heads.<stream>.*`) must be in the
    checkpoint with the model's shapes; the sign pyramid and auxiliary heads are copied when the
    checkpoint has them too. Returns, per stream, the parts copied. The checkpoint's gloss
    vocabulary must be `glosses` (the classifier rows are gloss ids)."""
    from jobs.evaluate import resolve_checkpoint

    loaded = {}
    for stream, source in [("rgb", pretrained.rgb_stream), ("keypoint", pretrained.keypoint_stream)]:
        if source is None:
            continue
        where = f"pretrained.{stream}_stream {source}"
        if stream not in model.backbones:
            raise ValueError(f"{where}: the model has no {stream} stream")
        try:
            ckpt = resolve_checkpoint(source)
            theirs = torch.load(ckpt / "model" / "weights.pt", map_location="cpu", weights_only=True)
            their_glosses = GlossVocabulary.load(ckpt / "gloss_vocab.json").glosses
        except (FileNotFoundError, KeyError) as e:
            raise ValueError(f"{where}: {e}") from e
        if list(their_glosses) != list(glosses):
            raise ValueError(f"{where}: its gloss vocabulary ({len(their_glosses)} glosses) differs from this run's "
                             f"({len(glosses)}); both must be trained on the same corpus")
        own = model.state_dict()
        copied, update = [], {}
        for part in STREAM_PARTS:
            prefix = f"{part}.{stream}."
            wanted = [k for k in own if k.startswith(prefix)]
            present = [k for k in wanted if k in theirs]
            if not wanted or (not present and part in ("pyramids", "aux_heads")):
                continue
            missing = sorted(set(wanted) - set(present)) + sorted(k for k in theirs if k.startswith(prefix) and k not in own)
            wrong = [f"{k}: checkpoint {tuple(theirs[k].shape)} vs model {tuple(own[k].shape)}"
                     for k in present if theirs[k].shape != own[k].shape]
            if missing or wrong:
                raise ValueError(f"{where} ({ckpt}): its {part}.{stream} does not fit the model (same sizes needed):"
                                 + "".join(f"\n  missing/unexpected: {k}" for k in missing[:10])
                                 + "".join(f"\n  shape: {w}" for w in wrong[:10]))
            update.update({k: theirs[k] for k in wanted})
            copied.append(part)
        model.load_state_dict(update, strict=False)
        loaded[stream] = copied
    return loaded


def save_model(model, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(model.config.model_dump(mode="json"), indent=1))
    torch.save(model.state_dict(), directory / "weights.pt")


def load_model(directory: Path, map_location: str | torch.device = "cpu"):
    from models.two_stream import TwoStreamConfig, TwoStreamSLR

    config = TwoStreamConfig.model_validate(json.loads((directory / "config.json").read_text()))
    model = TwoStreamSLR(config)
    model.load_state_dict(torch.load(directory / "weights.pt", map_location=map_location, weights_only=True))
    return model


# ---- the Ray Train worker -------------------------------------------------------------------------


def _gather(obj: Any) -> list[Any]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def sync_buffers_from_rank0(model: torch.nn.Module, rank: int) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) into this rank's model."""
    state = _gather({k: v.detach().cpu() for k, v in model.named_buffers()} if rank == 0 else None)[0]
    with torch.no_grad():
        for k, v in model.named_buffers():
            v.copy_(state[k])


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _write_run_files(run_dir: Path, history: list[dict], heads: list[str]) -> None:
    tmp = run_dir / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
    tmp.replace(run_dir / "metrics.jsonl")
    plot_learning_curve(history, heads, run_dir / "learning_curve.png")


def plot_learning_curve(history: list[dict], heads: list[str], path: Path, title: str | None = None) -> None:
    """Dev WER per head (left axis) and train loss (right axis) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for head in heads:
        ax.plot(epochs, [h[f"dev_wer_{head}"] for h in history], "o-", ms=3, label=f"dev WER {head}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev WER (%)")
    ax.legend(fontsize=7, loc="upper center")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["train_loss"] for h in history], "s--", color="black", ms=2, label="train loss")
    ax2.set_ylabel("train loss (CTC total)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def save_checkpoint(directory: Path, *, cfg: RecognitionConfig, model, vocab: GlossVocabulary, train_state: dict) -> None:
    save_model(model, directory / "model")
    vocab.save(directory / "gloss_vocab.json")
    save_config(cfg, directory / "config.yaml")
    torch.save(train_state, directory / "train_state.pt")
    (directory / "metrics.json").write_text(json.dumps(train_state["history"][-1]))


def train_loop_per_worker(loop_config: dict) -> dict:
    import ray.train
    import ray.train.torch

    from models.two_stream import TwoStreamSLR

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = RecognitionConfig.model_validate(loop_config["config"])
    corpus = loop_config["corpus"]
    vocab = GlossVocabulary(loop_config["glosses"])
    run_dir = cfg.run_dir
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if cfg.train.num_threads and device.type == "cpu":
        torch.set_num_threads(cfg.train.num_threads)
    # Every new clip length needs new oneDNN convolution kernels; the default cache (1,024) holds
    # fewer than ~60 convolutions x 3 passes x the lengths a run sees. With the foreach Adam below:
    # 66 -> 52 ms CPU per demo SingleStream clip (docs/PERFORMANCE.md). oneDNN reads it when it makes
    # its first kernel, so it is set before the model runs.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_KERNEL_CACHE))
    uses_kp = cfg.uses_keypoints()

    torch.manual_seed(cfg.train.seed)
    model = TwoStreamSLR(cfg.model_config_for(len(vocab)))
    if ray.train.get_checkpoint() is None:
        dropped = load_pretrained_backbones(model, cfg.pretrained)
        if rank == 0 and dropped:
            log.info("pretrained S3D loaded into %s (checkpoint layers beyond the model: %s)", sorted(dropped), dropped)
        copied = load_pretrained_streams(model, cfg.pretrained, vocab.glosses)
        if rank == 0 and copied:
            log.info("streams initialised from SingleStream checkpoints: %s", copied)
    model = model.to(device)
    heads = cfg.head_names()
    optimizer = make_optimizer(model, cfg)
    # streaming_split(equal=True) gives each worker floor(N / world) rows
    steps_per_epoch = max(1, math.ceil((loop_config["train_videos"] // world) / cfg.train.batch_size))
    plan = {"total_steps": steps_per_epoch * cfg.train.epochs}
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, plan["total_steps"], cfg.optim))

    start_epoch, step, history, elapsed_before = 0, 0, [], 0.0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / "train_state.pt", map_location="cpu", weights_only=False)
            model.load_state_dict(torch.load(Path(d) / "model" / "weights.pt", map_location=device, weights_only=True))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        start_epoch, step, history, elapsed_before = state["epoch"], state["step"], state["history"], state["elapsed_s"]
        if rank == 0:
            log.info("resuming after epoch %d (step %d, %.0f s trained)", start_epoch, step, elapsed_before)

    ddp_model = (
        ray.train.torch.prepare_model(model, move_to_device=False,
                                      parallel_strategy_kwargs={"find_unused_parameters": cfg.train.find_unused_parameters})
        if world > 1
        else model
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    train_shard = ray.train.get_dataset_shard("train")
    dev_shard = ray.train.get_dataset_shard("dev")  # not split: every worker decodes its share by name
    params = [p for p in model.parameters() if p.requires_grad]
    dev_rows: list[dict] | None = None
    train_cache: list[dict] | None = [] if cfg.data.cache_train else None
    cache_complete = False
    epochs_run = []
    t_start = time.time()
    for epoch in range(start_epoch, cfg.train.epochs):
        planned = cfg.train.epochs
        if cfg.train.max_minutes and history:
            elapsed = elapsed_before + time.time() - t_start
            ends = [0.0] + [h["elapsed_s"] for h in history]
            recent = [b - a for a, b in zip(ends[:-1], ends[1:])][-3:]
            per_epoch = sum(recent) / len(recent)
            fit = int((cfg.train.max_minutes * 60 - elapsed) // max(per_epoch, 1e-6))
            planned = _gather(min(cfg.train.epochs, epoch + fit))[0]  # rank 0 decides for all workers
            if planned <= epoch:
                if rank == 0:
                    log.warning("stopping before epoch %d: another epoch (%.0f s) would pass max_minutes=%s",
                                epoch + 1, per_epoch, cfg.train.max_minutes)
                break
        plan["total_steps"] = planned * steps_per_epoch
        t0 = time.time()
        ddp_model.train()
        collate = RecognitionCollate(cfg.data.collate, train=True, glosses=vocab.glosses, frame_stride=cfg.data.frame_stride,
                                     generator=hash((cfg.train.seed, epoch, rank)) % 2**32)
        sums: dict[str, float] = {}
        clips = infeasible = batches = clipped = 0
        norm_sum = 0.0
        frames_seen = frames_padded = 0
        replay = train_cache is not None and cache_complete
        if train_cache is not None and not replay:
            train_cache.clear()
        batches_in = train_batches(train_shard, collate, cfg, train_cache, replay=replay,
                                   shuffle_seed=(cfg.train.seed * 1000 + epoch) * 64 + rank,
                                   order_seed=cfg.train.seed * 1000 + epoch)
        for batch in prefetched(batches_in, cfg.train.prefetch_batches):
            with autocast:
                out = run_model(ddp_model, batch, device, uses_kp)
            w_kl = model.config.distill_weight * distill_factor(step, cfg.train.distill_warmup_epochs * steps_per_epoch)
            loss, parts = model.loss(out, batch["labels"].to(device), batch["label_lengths"].to(device), distill_weight=w_kl)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # the norm before clipping; max_norm=inf only measures it
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip or math.inf))
            norm_sum += grad_norm
            clipped += int(0 < cfg.optim.grad_clip < grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            batches += 1
            n = len(batch["names"])
            clips += n
            frames_seen += int(batch["frame_lengths"].sum())
            frames_padded += n * int(batch["frames"].shape[1])
            infeasible += parts["infeasible"]
            for k, v in parts.items():
                if k != "infeasible":
                    sums[k] = sums.get(k, 0.0) + float(v) * n
        cache_complete = train_cache is not None
        train_s = time.time() - t0
        gathered = _gather((sums, clips, infeasible, frames_seen, frames_padded))
        total_clips = sum(g[1] for g in gathered)
        train_parts = {k: sum(g[0].get(k, 0.0) for g in gathered) / max(1, total_clips) for k in sums}

        # dev: every worker decodes its share (plain model, no DDP collectives), rank 0 scores all.
        # DDP syncs BatchNorm running statistics only at the start of a forward, so after the last
        # step each rank's differ by its own batch: evaluate with rank 0's, the ones checkpointed.
        if world > 1:
            sync_buffers_from_rank0(model, rank)
        t1 = time.time()
        dev_collate = RecognitionCollate(cfg.data.collate, train=False, glosses=vocab.glosses, frame_stride=cfg.data.frame_stride)
        if dev_rows is None:
            rows = [r for b in dev_shard.iter_batches(batch_format="numpy", batch_size=cfg.decode.batch_size)
                    for r in _rows(b) if in_share(str(r["name"]), rank, world)]
            if cfg.data.cache_dev:
                dev_rows = rows
        else:
            rows = dev_rows
        dev = decode_split(model, eval_batches([rows], dev_collate, cfg.decode.batch_size),
                           heads, beam_width=cfg.decode.dev_beam_width, device=device, uses_keypoints=uses_kp, vocab=vocab)
        parts_all = _gather(dev)
        refs = [r for p in parts_all for r in p["refs"]]
        hyps = {h: [x for p in parts_all for x in p["hyps"][h]] for h in heads}
        scores = score_heads(refs, hyps, corpus)
        wers = {h: scores[h]["wer"] for h in heads}
        chosen = choose_head(wers, cfg.train.select_head)
        eval_s = time.time() - t1
        metrics = {
            "epoch": epoch + 1,
            "step": step,
            "lr": optimizer.param_groups[0]["lr"],
            "planned_epochs": planned,
            "train_loss": train_parts.get("total", float("nan")),
            **{f"train_{k}": v for k, v in train_parts.items() if k != "total"},
            **({"train_kl_weight": w_kl} if "kl" in train_parts else {}),  # at the epoch's last step
            "train_grad_norm": norm_sum / max(1, batches),  # mean over the epoch's steps, before clipping
            "train_clipped": clipped / max(1, batches),  # share of steps clipped to optim.grad_clip
            "train_clips": total_clips,
            "train_infeasible": sum(g[2] for g in gathered),
            "train_clips_per_s": total_clips / max(1e-9, train_s),
            "train_frames_per_clip": sum(g[3] for g in gathered) / max(1, total_clips),
            "train_padding": 1 - sum(g[3] for g in gathered) / max(1, sum(g[4] for g in gathered)),  # padded share of computed frames
            **{f"dev_wer_{h}": wers[h] for h in heads},
            "dev_wer": wers[chosen],
            "dev_head": chosen,
            "dev_sub": scores[chosen]["sub"], "dev_del": scores[chosen]["del"], "dev_ins": scores[chosen]["ins"],
            "dev_sentences": len(refs),
            "dev_infeasible": sum(p["infeasible"] for p in parts_all),
            "dev_unknown_glosses": sum(p["unknown_glosses"] for p in parts_all),
            "dev_beam_width": cfg.decode.dev_beam_width,
            "epoch_train_s": train_s,
            "epoch_eval_s": eval_s,
            "elapsed_s": elapsed_before + time.time() - t_start,
            "wall_time": time.time(),
        }
        history.append(metrics)
        epochs_run.append(epoch + 1)
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
            "epoch": epoch + 1,
            "step": step,
            "history": history,
            "elapsed_s": metrics["elapsed_s"],
        }
        if rank == 0:
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
            if metrics["train_infeasible"]:
                log.warning("epoch %d: %d training clip(s) had more glosses than output steps (left out of the loss)",
                            epoch + 1, metrics["train_infeasible"])
            _write_run_files(run_dir, history, heads)
            with tempfile.TemporaryDirectory(prefix="s2g_ckpt_") as tmp:
                save_checkpoint(Path(tmp), cfg=cfg, model=model, vocab=vocab, train_state=state)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics, checkpoint=None)
    return {"epochs_run": epochs_run}


# ---- driver ---------------------------------------------------------------------------------------


def prepare_assets(cfg: RecognitionConfig) -> tuple[GlossVocabulary, dict]:
    """The shards' manifest and the training vocabulary, copied into `<run_dir>/assets/` once: a
    resumed run keeps its vocabulary even if the shards are rebuilt."""
    from pipelines.shards import DatasetDir, dataset_uri, read_manifest

    manifest = read_manifest(cfg.data.shards, cfg.data.dataset)
    for split in (cfg.data.train_split, cfg.data.dev_split):
        if split not in manifest["splits"]:
            raise KeyError(f"{dataset_uri(cfg.data.shards, cfg.data.dataset)}: split {split!r} was not preprocessed")
    if cfg.uses_keypoints() and manifest.get("keypoint_backend") in (None, "none"):
        raise ValueError(f"{dataset_uri(cfg.data.shards, cfg.data.dataset)}: the shards have no keypoints "
                         f"(backend {manifest.get('keypoint_backend')!r}) but the model has a keypoint stream")
    assets = cfg.run_dir / "assets"
    path = assets / "gloss_vocab.json"
    if not path.exists():
        if not manifest.get("vocabulary"):
            raise ValueError(f"{dataset_uri(cfg.data.shards, cfg.data.dataset)}: the manifest names no vocabulary "
                             "(preprocess the training split)")
        directory = DatasetDir(dataset_uri(cfg.data.shards, cfg.data.dataset))
        assets.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(directory.read_text(manifest["vocabulary"]), encoding="utf-8")
        GlossVocabulary.load(tmp)  # validate before committing
        tmp.replace(path)
    return GlossVocabulary.load(path), manifest


def ensure_ray() -> None:
    from jobs.ray_cluster import init_ray

    init_ray(job_priority=True)


def split_dataset(cfg: RecognitionConfig, split: str, limit: int | None):
    from pipelines.shards import read_shards

    ds = read_shards(cfg.data.shards, cfg.data.dataset, split, columns=shard_columns(cfg.uses_keypoints()))
    return ds.limit(limit) if limit else ds


def run(cfg: RecognitionConfig) -> dict:
    """Train (or resume) on Ray Train and evaluate the best checkpoint on dev."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = absolute_paths(cfg)
    t0 = time.time()
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    vocab, manifest = prepare_assets(cfg)
    ensure_ray()
    train_videos = manifest["splits"][cfg.data.train_split]["written"]
    if cfg.data.train_limit:
        train_videos = min(train_videos, cfg.data.train_limit)
    datasets = {"train": split_dataset(cfg, cfg.data.train_split, cfg.data.train_limit),
                "dev": split_dataset(cfg, cfg.data.dev_split, cfg.data.dev_limit)}
    s = cfg.scaling
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg.model_dump(mode="json"), "glosses": vocab.glosses, "corpus": manifest["corpus"],
                           "train_videos": train_videos},
        scaling_config=ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker={"CPU": s.cpus_per_worker}),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=["train"]),
        run_config=RunConfig(
            name=cfg.name,
            storage_path=cfg.out_dir,
            failure_config=FailureConfig(max_failures=s.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=s.num_to_keep, checkpoint_score_attribute="dev_wer",
                                               checkpoint_score_order="min"),
        ),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    best = result.get_best_checkpoint("dev_wer", "min")
    if best is None:
        raise RuntimeError(f"{run_dir}: training reported no checkpoint")
    best_metrics = json.loads((Path(best.path) / "metrics.json").read_text())
    heads = cfg.head_names()
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "best_checkpoint": best.path,
        "best_epoch": best_metrics["epoch"],
        "best_head": best_metrics["dev_head"],
        "best_dev_wer": best_metrics["dev_wer"],
        "best_dev": {h: best_metrics[f"dev_wer_{h}"] for h in heads},
        "epochs_run": (result.return_value or {}).get("epochs_run"),
        "train_s": time.time() - t0,
    }
    (run_dir / "best_checkpoint.json").write_text(json.dumps(summary, indent=1))
    if cfg.final_eval:
        from jobs.evaluate import evaluate_s2g

        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        final = evaluate_s2g(Path(best.path), split=cfg.data.dev_split, out_dir=run_dir / f"eval_{cfg.data.dev_split}",
                             limit=cfg.data.dev_limit)
        summary["final_dev"] = final["wer"]
        summary["final_head"] = final["head"]
        summary["final_dev_wer"] = final["wer"][final["head"]]
        summary["final_beam_width"] = final["beam_width"]
    summary["wall_s"] = time.time() - t0
    (run_dir / "best_checkpoint.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = job_argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(RecognitionConfig, args.config, args.overrides)
    summary = run(cfg)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
