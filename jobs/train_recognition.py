"""Sign2Gloss (continuous sign language recognition) training on Ray Train: SingleStream-SLR or
TwoStream-SLR (models/two_stream.py) with CTC on preprocessed Parquet shards.

    python jobs/train_recognition.py --config configs/recognition/demo_single_stream.yaml [key=value ...]

The driver reads the shards' manifest (jobs/preprocess.py output), copies the training split's
gloss vocabulary into `<out_dir>/<name>/assets/`, and runs `TorchTrainer` with the train and dev
splits as Ray Datasets. Each worker streams its share of the training split through
`VideoCollate(train=True)` (the papers' augmentation; clips drawn `data.length_buckets` batches
at a time are batched by length, so less padding is computed; with `data.cache_train` the rows of
the first epoch stay in memory with decoded frames and later epochs replay them) and trains with
Adam (betas 0.9, 0.998, weight decay 1e-3), a cosine schedule (optional warm-up) over optimizer
steps or, `optim.schedule_unit: epoch`, changed once per epoch as the public code's, gradient
clipping (`optim.grad_clip`, 0: off), bf16 autocast on CUDA only, DDP when there is more than one
worker. With `train.clips_per_step` the gradients of several batches are accumulated into one
optimizer step (clips_per_step = batch_size x workers x batches per step): the same update as one
batch of all of them. Samples whose gloss sequence cannot fit the model's output length are left
out of the CTC loss and counted (`train_infeasible` per epoch).

The papers' two-stage recipe in one command: with `stream_pretraining.streams`, `run` first trains
each of those streams alone (run `<name>_<stream>`), then this TwoStream network starting from them
(`pretrained.<stream>_stream`); a stage that already finished with the same config is reused.

Auxiliary corpora (the cross-lingual paper's mixed training): `data.auxiliary` names preprocessed
corpora whose training clips join every mini-batch at 1:`data.alpha` (pipelines/mixed_batches.py:
each batch of B primary clips gets floor or ceil of alpha x B auxiliary clips, an epoch of N primary
clips exactly round(alpha x N); the epoch is the primary data's; several corpora are drawn in
proportion to their sizes). An auxiliary clip's labels are its `relabel` file's (the cross-lingual
mapping's output: mapped glosses are primary glosses, unmapped ones `<lang>:<gloss>` classes;
format in pipelines/auxiliary_labels.py), or without one its own glosses as `<lang>:<gloss>`
classes (the multi-task baseline) or, `same_language`, by name (a corpus of the primary's sign
language: shared glosses are one class). The vocabulary is the primary's glosses followed by the
auxiliary classes that are not among them. Dev and test stay the primary's: WER is against primary
glosses, so a predicted auxiliary-only class counts as an error. `data.alpha` 0 is the monolingual
baseline (no auxiliary corpus read, the primary vocabulary alone); `data.primary_fraction` trains on
a seeded subset of the primary training split. The summary records each auxiliary corpus' clips,
classes and mapped classes, `aux_mapped_share` over all, and epochs count `train_aux_clips`.

Every epoch dev is decoded (greedy by default, `decode.dev_beam_width`) for every head (rgb,
keypoint, fuse, ensemble, as the model has them), the WER of each is reported with a checkpoint
(`ray.train.report`), and `dev_wer` is the WER of the selected head (`train.select_head`; `auto`: the
head with the lowest dev WER in that epoch, recorded as `dev_head`). Ray keeps the best checkpoints by
`dev_wer` and always the latest. Re-running the same command resumes from the latest checkpoint and
never repeats a finished epoch. With `train.max_minutes` the cosine schedule is planned over the
epochs that fit in the budget (re-estimated every epoch) and training stops before passing it. At the
end the best checkpoint is decoded on dev with `decode.beam_width` (jobs/evaluate.py --task s2g).

Run directory: `assets/` (gloss_vocab.json, primary_vocab.json), `checkpoint_*/` (Ray), `metrics.jsonl` (one line per
epoch), `learning_curve.png`, `best_checkpoint.json`, `eval_dev/` (final hypotheses and scores).
Checkpoint layout: `model/` (`weights.pt`, `config.json`: the TwoStreamConfig), `gloss_vocab.json`,
`config.yaml` (the resolved run config), `train_state.pt` (optimizer, scheduler, epoch, RNG, history),
`metrics.json` (that epoch's metrics).
"""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

import torch
from pydantic import Field, field_validator, model_validator

from common.config import StrictModel, save_config
from common.files import atomic_path
from pipelines.mixed_batches import auxiliary_stream
from pipelines.prefetch import prefetched
from pipelines.recognition_batches import RecognitionCollate, eval_batches, in_share, shard_columns, train_batches
from pipelines.video_collate import VideoCollateConfig, rows_of
from pipelines.vocabulary import GlossVocabulary
from training import state as train_state
from training.checkpoint import load_sign2gloss, save_sign2gloss, write_checkpoint
from training.cli import LOG_FORMAT, recipe_main
from training.distributed import autocast, gather, sync_buffers_from_rank0, worker_context, wrap_ddp
from training.evaluation import choose_head, decode_split, run_model, score_heads
from training.ray_train import ScalingSection, finished_summary, fit, report_epoch, write_summary
from training.ray_cluster import storage_path
from training.run_log import CurveSpec, RunLog
from training.schedule import EpochBudget, make_lr_scheduler

log = logging.getLogger("train_recognition")

# oneDNN primitive cache capacity of CPU training workers: every new clip length needs new convolution
# kernels, and the default cache (1,024) holds fewer than ~60 convolutions x 3 passes x the lengths a
# run sees (docs/PERFORMANCE.md). oneDNN reads it when it makes its first kernel, so workers set it
# before the model runs.
ONEDNN_KERNEL_CACHE = 8192

HeadChoice = Literal["auto", "rgb", "keypoint", "fuse", "ensemble"]


# ---- configuration ------------------------------------------------------------------------------


class AuxiliarySection(StrictModel):
    """An auxiliary corpus whose training clips join every mini-batch at 1:`data.alpha` (module
    docstring, "Auxiliary corpora")."""

    shards: str  # root folder of preprocessed datasets (jobs/preprocess.py out_dir)
    dataset: str | None = None  # dataset folder under `shards`; None: `shards` itself
    split: str = "train"
    # relabel file of the cross-lingual mapping (pipelines/auxiliary_labels.py: JSON lines
    # {"name": <sample name in these shards>, "gloss": "<space-separated classes>"}, one line per sample
    # of `split`, each auxiliary gloss replaced by its primary gloss or kept as "<lang>:<gloss>").
    # None: the corpus' own glosses, as `<language>:<gloss>` classes (the multi-task baseline) or,
    # with `same_language`, by name.
    relabel: str | None = None
    same_language: bool = False  # the primary's sign language: glosses merge with the primary's by name, unmapped
    language: str | None = None  # prefix of its own classes; None: the language in the shards' manifest


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
    # auxiliary corpora by a short name (overrides: data.auxiliary.<name>.relabel=...), all mixed in at
    # 1:alpha (alpha 0: the monolingual baseline, the auxiliary corpora unread)
    auxiliary: dict[str, AuxiliarySection] = {}
    alpha: float = Field(0.2, ge=0)
    # train on this fraction of the primary training split: the samples first in a permutation of
    # their sorted names drawn from train.seed (the papers' 20/40/60 %)
    primary_fraction: float = Field(1.0, gt=0, le=1)


class OptimSection(StrictModel):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.998)
    eps: float = 1e-8
    weight_decay: float = 1e-3  # Adam's L2 term, as the papers' code
    schedule: Literal["cosine", "constant"] = "cosine"
    # "step": the schedule advances every optimizer step; "epoch": once per epoch (the public code's
    # CosineAnnealingLR(T_max=epochs)), warmup_steps then counting epochs
    schedule_unit: Literal["step", "epoch"] = "step"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    # max gradient norm; 0 = off (the public code does not clip). The CTC losses are summed per clip,
    # so gradient norms run in the hundreds: clipped to 1, the gradient shrinks a hundredfold while
    # the weight-decay term (in the gradient, Adam's L2) does not, and decay dominates the update.
    grad_clip: float = 1.0


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
    # "stream": copy the whole stream as above. "encoder": copy only its S3D (`backbones.<stream>.*`);
    # the source may then have any gloss vocabulary: a Sign2Gloss run on another corpus or sign
    # language, the stand-in for the papers' pretrained visual encoder.
    stream_parts: Literal["stream", "encoder"] = "stream"
    # Learning-rate factor for the parameters of every stream set above (its S3D; with *_stream also
    # its head, pyramid and auxiliary heads). Below 1, a copied stream keeps what it learned while
    # the new parts (the other stream, laterals, fuse head) catch up.
    lr_scale: float = Field(1.0, gt=0)


class TrainSection(StrictModel):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(2, ge=1)  # clips per batch and worker
    # clips per optimizer step over all workers (the papers: 8); a multiple of batch_size x
    # scaling.num_workers, the batches between steps accumulating their gradients. None: one batch per step
    clips_per_step: int | None = Field(None, ge=1)
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
    # mixed training: dev/test decoding emits the primary corpus' glosses only (its classes come
    # first); an auxiliary-only class can never be right on the primary's videos. False: every class
    primary_classes_only: bool = True


class StreamPretrainingSection(StrictModel):
    """The papers' first stage: each listed stream trained alone on the corpus before the TwoStream
    network starts from it. Each stage is this config with `model.streams=[<stream>]`, the other
    stream's `pretrained` entries and `train.select_head` cleared, `pretrained.lr_scale` 1, run name
    `<name>_<stream>`, then `overrides` (key=value, e.g. train.epochs=30)."""

    streams: list[Literal["rgb", "keypoint"]] = []  # empty: one stage, this network alone
    overrides: list[str] = []


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
    stream_pretraining: StreamPretrainingSection = StreamPretrainingSection()
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
        per_step = self.train.batch_size * self.scaling.num_workers
        if self.train.clips_per_step is not None and self.train.clips_per_step % per_step:
            raise ValueError(f"train.clips_per_step {self.train.clips_per_step} is not a multiple of train.batch_size x "
                             f"scaling.num_workers = {per_step}")
        stages = self.stream_pretraining.streams
        streams = self.model_config_for(3).streams
        if stages and (len(streams) != 2 or len(set(stages)) != len(stages)):
            raise ValueError(f"stream_pretraining.streams {stages}: needs a two-stream model and each stream once")
        for stream in stages:
            if getattr(self.pretrained, f"{stream}_stream"):
                raise ValueError(f"stream_pretraining trains the {stream} stream: leave pretrained.{stream}_stream unset")
        for key, aux in self.data.auxiliary.items():
            if aux.relabel and aux.same_language:
                raise ValueError(f"data.auxiliary.{key}: same_language merges by gloss name; give relabel or same_language, not both")
        return self

    def mixes_auxiliary(self) -> bool:
        """Whether auxiliary clips join the batches (some auxiliary corpus and alpha > 0)."""
        return bool(self.data.auxiliary) and self.data.alpha > 0

    def accumulation(self) -> int:
        """Batches per optimizer step on each worker."""
        per_step = self.train.batch_size * self.scaling.num_workers
        return 1 if self.train.clips_per_step is None else self.train.clips_per_step // per_step

    def model_config_for(self, num_classes: int):
        from models.two_stream import TwoStreamConfig

        return TwoStreamConfig.model_validate({**self.model, "num_classes": num_classes})

    def head_names(self) -> list[str]:
        """Decodable heads: the model's heads, plus `ensemble` when it has several."""
        return self.model_config_for(3).decodable_heads

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def uses_keypoints(self) -> bool:
        return "keypoint" in self.model_config_for(3).streams


def absolute_paths(cfg: RecognitionConfig) -> RecognitionConfig:
    """Local paths resolved against the current directory (Ray workers may run elsewhere)."""
    cfg = cfg.model_copy(deep=True)
    cfg.out_dir = storage_path(cfg.out_dir)
    cfg.data.shards = storage_path(cfg.data.shards)
    for aux in cfg.data.auxiliary.values():
        aux.shards = storage_path(aux.shards)
        aux.relabel = str(Path(aux.relabel).resolve()) if aux.relabel else None
    for field in ("rgb_s3d", "keypoint_s3d", "rgb_stream", "keypoint_stream"):
        if getattr(cfg.pretrained, field):
            setattr(cfg.pretrained, field, str(Path(getattr(cfg.pretrained, field)).resolve()))
    return cfg


# ---- data: the shards' manifest and vocabulary (driver), Ray Datasets ------------------------------


def check_dataset(shards: str, dataset: str | None, splits: list[str], keypoints: bool) -> dict:
    """The manifest of a preprocessed dataset, with the given splits and (when the model needs them) keypoints."""
    from pipelines.shards import dataset_uri, read_manifest

    where = dataset_uri(shards, dataset)
    manifest = read_manifest(shards, dataset)
    for split in splits:
        if split not in manifest["splits"]:
            raise KeyError(f"{where}: split {split!r} was not preprocessed")
    if keypoints and manifest.get("keypoint_backend") in (None, "none"):
        raise ValueError(f"{where}: the shards have no keypoints (backend {manifest.get('keypoint_backend')!r}) "
                         "but the model has a keypoint stream")
    return manifest


def split_samples(shards: str, dataset: str | None, split: str) -> tuple[list[str], dict[str, str]]:
    """(shard files, {sample name: gloss string}) of one split, read without Ray Data."""
    from pipelines.shards import read_shard_file, shard_uris

    files = shard_uris(shards, dataset, split)
    samples = {}
    for uri in files:
        batch = read_shard_file(uri, ["name", "gloss"])
        samples.update(zip(map(str, batch["name"]), map(str, batch["gloss"])))
    return files, samples


def prepare_auxiliary(cfg: RecognitionConfig, primary: list[str]) -> list[dict]:
    """Each auxiliary corpus of a mixing run: {"name", "files", "labels" (sample -> classes),
    "summary"} (pipelines/auxiliary_labels.py). Empty when the run does not mix."""
    from pipelines.auxiliary_labels import auxiliary_labels, read_relabel
    from pipelines.shards import dataset_uri

    corpora = []
    for key, aux in cfg.data.auxiliary.items() if cfg.mixes_auxiliary() else ():
        manifest = check_dataset(aux.shards, aux.dataset, [aux.split], cfg.uses_keypoints())
        files, samples = split_samples(aux.shards, aux.dataset, aux.split)
        source = aux.relabel or dataset_uri(aux.shards, aux.dataset)
        labels = auxiliary_labels(samples, set(primary), language=aux.language or manifest["language"],
                                  relabel=read_relabel(aux.relabel) if aux.relabel else None,
                                  same_language=aux.same_language, source=f"data.auxiliary.{key} {source}")
        corpora.append({"name": key, "files": files, "labels": labels.labels, "summary": labels})
    return corpora


def prepare_assets(cfg: RecognitionConfig) -> tuple[GlossVocabulary, dict, list[dict]]:
    """The shards' manifest, the auxiliary corpora (`prepare_auxiliary`) and the training vocabulary:
    the primary training split's glosses, then the auxiliary classes that are not among them
    (pipelines.auxiliary_labels.union_glosses), written into `<run_dir>/assets/` once (gloss_vocab.json;
    primary_vocab.json the primary's alone): a resumed run keeps its vocabulary even if the shards are rebuilt."""
    from pipelines.auxiliary_labels import union_glosses
    from pipelines.shards import DatasetDir, dataset_uri

    where = dataset_uri(cfg.data.shards, cfg.data.dataset)
    manifest = check_dataset(cfg.data.shards, cfg.data.dataset, [cfg.data.train_split, cfg.data.dev_split], cfg.uses_keypoints())
    path, primary_path = cfg.run_dir / "assets" / "gloss_vocab.json", cfg.run_dir / "assets" / "primary_vocab.json"
    if not primary_path.exists():
        if not manifest.get("vocabulary"):
            raise ValueError(f"{where}: the manifest names no vocabulary (preprocess the training split)")
        with atomic_path(primary_path) as tmp:
            tmp.write_text(DatasetDir(where).read_text(manifest["vocabulary"]), encoding="utf-8")
            GlossVocabulary.load(tmp)  # validate before committing
    primary = GlossVocabulary.load(primary_path)
    corpora = prepare_auxiliary(cfg, primary.glosses)
    if not path.exists():
        GlossVocabulary(union_glosses(primary.glosses, [c["summary"] for c in corpora])).save(path)
    vocab = GlossVocabulary.load(path)
    for corpus in corpora:
        missing = sorted({g for label in corpus["labels"].values() for g in label.split()} - set(vocab.glosses))
        if missing:
            raise ValueError(f"{path}: auxiliary corpus {corpus['name']} has classes {missing[:5]} outside this run's vocabulary "
                             "(the auxiliary labels changed since the run started: use a new run name)")
    return vocab, manifest, corpora


def primary_train_names(cfg: RecognitionConfig) -> list[str] | None:
    """The training samples of a `data.primary_fraction` below 1 (mixed_batches.primary_subset); None: all."""
    from pipelines.mixed_batches import primary_subset

    if cfg.data.primary_fraction >= 1:
        return None
    _, samples = split_samples(cfg.data.shards, cfg.data.dataset, cfg.data.train_split)
    return primary_subset(samples, cfg.data.primary_fraction, cfg.train.seed)


def split_dataset(cfg: RecognitionConfig, split: str, limit: int | None, names: list[str] | None = None):
    """A split of the primary shards as a Ray Dataset: the samples in `names` only (when given), the first `limit`."""
    from pipelines.shards import read_shards

    ds = read_shards(cfg.data.shards, cfg.data.dataset, split, columns=shard_columns(cfg.uses_keypoints()))
    if names is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        keep = pa.array(names, pa.string())
        ds = ds.map_batches(lambda t: t.filter(pc.is_in(t["name"], value_set=keep)), batch_format="pyarrow")
    return ds.limit(limit) if limit else ds


def dev_share(dev_shard, cfg: RecognitionConfig, rank: int, world: int) -> list[dict]:
    """This worker's rows of the dev split (every worker gets the whole split and keeps its share by name)."""
    return [r for b in dev_shard.iter_batches(batch_format="numpy", batch_size=cfg.decode.batch_size)
            for r in rows_of(b) if in_share(str(r["name"]), rank, world)]


# ---- model and optimizer ---------------------------------------------------------------------------


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
    """Copy streams from Sign2Gloss checkpoints (`pretrained.{rgb,keypoint}_stream`, a checkpoint or a
    run directory) with models.two_stream.copy_stream; returns, per stream, the parts copied. The
    checkpoint's gloss vocabulary must be `glosses` (the classifier rows are gloss ids), unless
    `pretrained.stream_parts` is "encoder" (the S3D alone is copied)."""
    from models.two_stream import copy_stream

    encoder_only = pretrained.stream_parts == "encoder"

    loaded = {}
    for stream, source in [("rgb", pretrained.rgb_stream), ("keypoint", pretrained.keypoint_stream)]:
        if source is None:
            continue
        where = f"pretrained.{stream}_stream {source}"
        try:
            theirs = load_sign2gloss(source)
        except (FileNotFoundError, KeyError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from e
        if not encoder_only and list(theirs.vocab.glosses) != list(glosses):
            raise ValueError(f"{where}: its gloss vocabulary ({len(theirs.vocab.glosses)} glosses) differs from this "
                             f"run's ({len(glosses)}); both must be trained on the same corpus")
        try:
            loaded[stream] = copy_stream(model, theirs.model.state_dict(), stream, parts=("backbones",) if encoder_only else None)
        except ValueError as e:
            raise ValueError(f"{where} ({theirs.path}): {e}") from e
    return loaded


def build_model(cfg: RecognitionConfig, vocab: GlossVocabulary, *, fresh: bool, log_to: logging.Logger | None = None):
    """TwoStreamSLR of the config's sizes (seeded); a fresh run starts its streams from `pretrained.*`."""
    from models.two_stream import TwoStreamSLR

    torch.manual_seed(cfg.train.seed)
    model = TwoStreamSLR(cfg.model_config_for(len(vocab)))
    if fresh:
        dropped = load_pretrained_backbones(model, cfg.pretrained)
        copied = load_pretrained_streams(model, cfg.pretrained, vocab.glosses)
        if log_to and dropped:
            log_to.info("pretrained S3D loaded into %s (checkpoint layers beyond the model: %s)", sorted(dropped), dropped)
        if log_to and copied:
            log_to.info("streams initialised from SingleStream checkpoints: %s", copied)
    return model


def pretrained_parameter_names(model: torch.nn.Module, pretrained: PretrainedSection) -> set[str]:
    """Parameters that start from a checkpoint given in `pretrained` (decided by the config alone, so
    a resumed run rebuilds the same optimizer groups): `backbones.<stream>.*` for *_s3d, and every
    per-stream part (STREAM_PARTS) for *_stream."""
    from models.two_stream import STREAM_PARTS

    prefixes = []
    for stream in ("rgb", "keypoint"):
        if getattr(pretrained, f"{stream}_stream"):
            parts = ("backbones",) if pretrained.stream_parts == "encoder" else STREAM_PARTS
            prefixes += [f"{part}.{stream}." for part in parts]
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


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: RecognitionConfig, budget: EpochBudget):
    """The learning-rate schedule over the run's optimizer steps as `budget` plans them, or
    (`optim.schedule_unit: epoch`) over its epochs: stepped once per epoch, as the public code's
    CosineAnnealingLR, so epoch e (0-based) of E trains at lr x (1 + cos(pi e / E)) / 2."""
    o = cfg.optim
    total = (lambda: budget.planned) if o.schedule_unit == "epoch" else budget.total_steps
    return make_lr_scheduler(optimizer, total, warmup_steps=o.warmup_steps, schedule=o.schedule, min_lr_ratio=o.min_lr_ratio)


def distill_factor(step: int, warmup_steps: float) -> float:
    """Multiplier of the KL weight at optimizer step `step` (0-based): linear from 1/warmup_steps to 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


# ---- the training step and epoch -------------------------------------------------------------------


def forward_backward(model, ddp_model, batch: dict, *, device: torch.device, uses_keypoints: bool, kl_weight: float,
                     loss_scale: float | None = None) -> dict:
    """Forward and backward of a collated batch, its gradients added to the parameters'; the loss (a
    mean over the batch's clips) times `loss_scale` when given. With `model.config.heatmap_sigma_follows_crop`
    the batch's `crop_zoom` goes to the model. Returns the loss parts (floats) and `infeasible`."""
    with autocast(device):
        if model.config.heatmap_sigma_follows_crop and "crop_zoom" in batch:
            out = ddp_model(batch["frames"].to(device, non_blocking=True), batch["frame_lengths"].to(device),
                            batch["keypoints"].to(device, non_blocking=True) if uses_keypoints else None,
                            crop_zoom=batch["crop_zoom"].to(device))
        else:
            out = run_model(ddp_model, batch, device, uses_keypoints)
    loss, parts = model.loss(out, batch["labels"].to(device), batch["label_lengths"].to(device), distill_weight=kl_weight)
    (loss if loss_scale is None else loss * loss_scale).backward()
    return {**{k: float(v) for k, v in parts.items() if k != "infeasible"}, "infeasible": parts["infeasible"]}


def optimizer_step(model, optimizer: torch.optim.Optimizer, scheduler, *, grad_clip: float,
                   grad_divisor: float | None = None) -> dict:
    """Gradients divided by `grad_divisor` (when given), clipped to norm `grad_clip` (0: off),
    the optimizer's step and the scheduler's (None: the scheduler steps elsewhere). Returns
    `grad_norm` (before clipping; 0 only measures it) and `clipped` (0/1)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if grad_divisor is not None:
        for p in params:
            if p.grad is not None:
                p.grad.div_(grad_divisor)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip or math.inf))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return {"grad_norm": grad_norm, "clipped": int(0 < grad_clip < grad_norm)}


def train_step(model, ddp_model, batch: dict, optimizer: torch.optim.Optimizer, scheduler, *, device: torch.device,
               uses_keypoints: bool, kl_weight: float, grad_clip: float) -> dict:
    """One optimizer step on a collated batch. Returns the loss parts (floats), `infeasible`,
    `grad_norm` (before clipping; `grad_clip` 0 only measures it) and `clipped` (0/1)."""
    optimizer.zero_grad(set_to_none=True)
    parts = forward_backward(model, ddp_model, batch, device=device, uses_keypoints=uses_keypoints, kl_weight=kl_weight)
    return {**parts, **optimizer_step(model, optimizer, scheduler, grad_clip=grad_clip)}


def with_last(items: Iterable) -> Iterator[tuple[Any, bool]]:
    """(item, whether it is the last one), looking one item ahead."""
    it = iter(items)
    try:
        item = next(it)
    except StopIteration:
        return
    for following in it:
        yield item, False
        item = following
    yield item, True


def train_epoch(model, ddp_model, batches: Iterable[dict], optimizer, scheduler, progress: train_state.Progress,
                cfg: RecognitionConfig, device: torch.device, steps_per_epoch: int) -> dict:
    """One epoch over `batches`: an optimizer step every `cfg.accumulation()` batches (and after the
    last), counted in `progress`; `scheduler` steps with it (None: not here). Accumulated batches
    add the gradients of their clip-summed losses, divided by the step's clips before the step (one
    batch per step: the batch's mean loss, as it is). Returns this worker's sums: loss parts (x clips),
    clips (auxiliary ones included, and counted apart), infeasible, grad norms, clipped steps, batches,
    optimizer steps, real and padded frames, and the last KL weight."""
    sums = {"losses": {}, "clips": 0, "aux_clips": 0, "infeasible": 0, "grad_norm": 0.0, "clipped": 0, "batches": 0, "steps": 0,
            "frames": 0, "padded_frames": 0, "kl_weight": 0.0}
    uses_keypoints, accumulate = cfg.uses_keypoints(), cfg.accumulation()
    micro = step_clips = 0
    for batch, last in with_last(prefetched(batches, cfg.train.prefetch_batches)):
        kl = model.config.distill_weight * distill_factor(progress.step, cfg.train.distill_warmup_epochs * steps_per_epoch)
        n = len(batch["names"])
        if micro == 0:
            optimizer.zero_grad(set_to_none=True)
        micro, step_clips = micro + 1, step_clips + n
        ends_step = micro == accumulate or last
        sync = nullcontext() if ends_step or ddp_model is model else ddp_model.no_sync()
        with sync:  # DDP averages the gradients over workers once per optimizer step
            parts = forward_backward(model, ddp_model, batch, device=device, uses_keypoints=uses_keypoints, kl_weight=kl,
                                     loss_scale=None if accumulate == 1 else n)
        if ends_step:
            parts.update(optimizer_step(model, optimizer, scheduler, grad_clip=cfg.optim.grad_clip,
                                        grad_divisor=None if accumulate == 1 else step_clips))
            progress.step += 1
            sums["steps"] += 1
            micro = step_clips = 0
        for key in ("infeasible", "grad_norm", "clipped"):
            sums[key] += parts.pop(key, 0)
        for k, v in parts.items():
            sums["losses"][k] = sums["losses"].get(k, 0.0) + v * n
        sums["clips"] += n
        sums["aux_clips"] += batch.get("aux_clips", 0)
        sums["batches"] += 1
        sums["frames"] += int(batch["frame_lengths"].sum())
        sums["padded_frames"] += n * int(batch["frames"].shape[1])
        sums["kl_weight"] = kl
    return sums


def train_metrics(per_worker: list[dict], seconds: float) -> dict:
    """Epoch training metrics from every worker's `train_epoch` sums."""
    clips = sum(w["clips"] for w in per_worker)
    keys = per_worker[0]["losses"].keys()
    losses = {k: sum(w["losses"].get(k, 0.0) for w in per_worker) / max(1, clips) for k in keys}
    own = per_worker[0]  # gradient statistics: rank 0's steps, as every rank takes the same number
    frames, padded = sum(w["frames"] for w in per_worker), sum(w["padded_frames"] for w in per_worker)
    return {
        "train_loss": losses.get("total", float("nan")),
        **{f"train_{k}": v for k, v in losses.items() if k != "total"},
        **({"train_kl_weight": own["kl_weight"]} if "kl" in losses else {}),  # at the epoch's last step
        "train_grad_norm": own["grad_norm"] / max(1, own["steps"]),  # mean over the epoch's optimizer steps, before clipping
        "train_clipped": own["clipped"] / max(1, own["steps"]),  # share of steps clipped to optim.grad_clip
        "train_clips": clips,  # primary and auxiliary
        "train_aux_clips": sum(w["aux_clips"] for w in per_worker),
        "train_infeasible": sum(w["infeasible"] for w in per_worker),
        "train_clips_per_s": clips / max(1e-9, seconds),
        "train_frames_per_clip": frames / max(1, clips),
        "train_padding": 1 - frames / max(1, padded),  # padded share of computed frames
    }


# ---- the dev evaluation ------------------------------------------------------------------------------


def evaluate_dev(model, rows: list[dict], cfg: RecognitionConfig, vocab: GlossVocabulary, corpus: str,
                 device: torch.device, decode_classes: int | None) -> dict:
    """Decode this worker's dev rows with every head, gather all workers' results and score them.
    Returns the dev metrics (WER per head, the selected head's WER and error counts)."""
    heads = cfg.head_names()
    collate = RecognitionCollate(cfg.data.collate, train=False, glosses=vocab.glosses, frame_stride=cfg.data.frame_stride)
    dev = decode_split(model, eval_batches([rows], collate, cfg.decode.batch_size), heads, beam_width=cfg.decode.dev_beam_width,
                       device=device, uses_keypoints=cfg.uses_keypoints(), vocab=vocab, num_classes=decode_classes)
    parts = gather(dev)
    refs = [r for p in parts for r in p["refs"]]
    scores = score_heads(refs, {h: [x for p in parts for x in p["hyps"][h]] for h in heads}, corpus)
    wers = {h: scores[h]["wer"] for h in heads}
    chosen = choose_head(wers, cfg.train.select_head)
    return {
        **{f"dev_wer_{h}": wers[h] for h in heads},
        "dev_wer": wers[chosen],
        "dev_head": chosen,
        "dev_sub": scores[chosen]["sub"], "dev_del": scores[chosen]["del"], "dev_ins": scores[chosen]["ins"],
        "dev_sentences": len(refs),
        "dev_infeasible": sum(p["infeasible"] for p in parts),
        "dev_unknown_glosses": sum(p["unknown_glosses"] for p in parts),
        "dev_beam_width": cfg.decode.dev_beam_width,
    }


# ---- the Ray Train worker ------------------------------------------------------------------------------


def log_epoch(metrics: dict, history: list[dict], run_log: RunLog) -> None:
    """Rank 0 after an epoch: a warning for clips left out of the loss, the run logs."""
    if metrics["train_infeasible"]:
        log.warning("epoch %d: %d training clip(s) had more glosses than output steps (left out of the loss)",
                    metrics["epoch"], metrics["train_infeasible"])
    run_log.write(history)


def train_loop_per_worker(loop_config: dict) -> dict:
    import ray.train

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    cfg = RecognitionConfig.model_validate(loop_config["config"])
    vocab = GlossVocabulary(loop_config["glosses"])
    rank, world, device = worker_context()
    if cfg.train.num_threads and device.type == "cpu":
        torch.set_num_threads(cfg.train.num_threads)
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_KERNEL_CACHE))

    checkpoint = ray.train.get_checkpoint()
    model = build_model(cfg, vocab, fresh=checkpoint is None, log_to=log if rank == 0 else None).to(device)
    optimizer = make_optimizer(model, cfg)
    # streaming_split(equal=True) gives each worker floor(N / world) rows
    batches_per_epoch = max(1, math.ceil((loop_config["train_videos"] // world) / cfg.train.batch_size))
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.accumulation())
    budget = EpochBudget(cfg.train.epochs, cfg.train.max_minutes, steps_per_epoch)
    scheduler, per_epoch = make_scheduler(optimizer, cfg, budget), cfg.optim.schedule_unit == "epoch"
    progress, _ = train_state.resume(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, map_location=device,
                                     rank=rank)

    ddp_model = wrap_ddp(model, world, cfg.train.find_unused_parameters)
    aux_rows = auxiliary_stream(loop_config["auxiliary"], shard_columns(cfg.uses_keypoints()), rank=rank, world=world,
                                shuffle_buffer=cfg.data.shuffle_buffer, seed=cfg.train.seed) if loop_config["auxiliary"] else None
    train_shard, dev_shard = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("dev")
    run_log = RunLog(cfg.run_dir, CurveSpec(tuple((f"dev_wer_{h}", f"dev WER {h}") for h in cfg.head_names()), "dev WER (%)",
                                            (("train_loss", "train loss"),), "train loss (CTC total)"))
    dev_rows, train_cache = None, [] if cfg.data.cache_train else None
    first_epoch = progress.epoch
    for epoch in budget.epochs(progress):
        t0 = time.time()
        ddp_model.train()
        collate = RecognitionCollate(cfg.data.collate, train=True, glosses=vocab.glosses, frame_stride=cfg.data.frame_stride,
                                     generator=hash((cfg.train.seed, epoch, rank)) % 2**32)
        replay = train_cache is not None and epoch > first_epoch  # the cache holds this process's first epoch
        if train_cache is not None and not replay:
            train_cache.clear()
        batches = train_batches(train_shard, collate, train_cache, batch_size=cfg.train.batch_size,
                                length_buckets=cfg.data.length_buckets, shuffle_buffer=cfg.data.shuffle_buffer,
                                cache_size=cfg.data.cache_size, replay=replay,
                                shuffle_seed=(cfg.train.seed * 1000 + epoch) * 64 + rank, order_seed=cfg.train.seed * 1000 + epoch,
                                auxiliary=aux_rows, alpha=cfg.data.alpha)
        sums = train_epoch(model, ddp_model, batches, optimizer, None if per_epoch else scheduler, progress, cfg, device,
                           steps_per_epoch)
        lr = optimizer.param_groups[0]["lr"]  # at the epoch's last step
        if per_epoch:
            scheduler.step()
        train_s = time.time() - t0

        # dev: every worker decodes its share with the plain model and rank 0's BatchNorm buffers
        if world > 1:
            sync_buffers_from_rank0(model)
        t1 = time.time()
        rows = dev_rows if dev_rows is not None else dev_share(dev_shard, cfg, rank, world)
        dev_rows = rows if cfg.data.cache_dev else None
        dev = evaluate_dev(model, rows, cfg, vocab, loop_config["corpus"], device, loop_config["decode_classes"])
        metrics = {"epoch": epoch + 1, "step": progress.step, "lr": lr, "planned_epochs": budget.planned,
                   **train_metrics(gather(sums), train_s), **dev, "epoch_train_s": train_s, "epoch_eval_s": time.time() - t1,
                   "elapsed_s": progress.elapsed_s(), "wall_time": time.time()}
        progress.end_epoch(metrics)
        if rank == 0:
            log_epoch(metrics, progress.history, run_log)
        state = train_state.capture(progress, optimizer=optimizer, scheduler=scheduler) if rank == 0 else None
        report_epoch(metrics, rank=rank, save=lambda d: write_checkpoint(
            d, save_model=lambda m: save_sign2gloss(m, model=model, vocab=vocab, collate=cfg.data.collate,
                                                    frame_stride=cfg.data.frame_stride,
                                                    keypoint_backend=loop_config["keypoint_backend"],
                                                    decode_classes=loop_config["decode_classes"]),
            train_state=state, run_config=cfg, metrics=metrics))
    run_log.close()
    return {"epochs_run": [h["epoch"] for h in progress.history if h["epoch"] > first_epoch]}


# ---- driver ---------------------------------------------------------------------------------------------


def stage_config(cfg: RecognitionConfig, stream: str) -> RecognitionConfig:
    """The single-stream run of `stream_pretraining` for `stream` (see StreamPretrainingSection)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    other = "keypoint" if stream == "rgb" else "rgb"
    data = cfg.model_dump(mode="json")
    data.update(name=f"{cfg.name}_{stream}", model={**data["model"], "streams": [stream]}, stream_pretraining={})
    data["pretrained"].update({f"{other}_s3d": None, f"{other}_prefix": None, f"{other}_stream": None, "lr_scale": 1.0})
    data["train"]["select_head"] = "auto"
    try:
        merged = OmegaConf.merge(OmegaConf.create(data), OmegaConf.from_dotlist(list(cfg.stream_pretraining.overrides)))
        return RecognitionConfig.model_validate(OmegaConf.to_container(merged, resolve=True))
    except (ValueError, OmegaConfBaseException) as e:  # an override or the resulting config is invalid
        raise ValueError(f"stream_pretraining, the {stream} stage: {e}") from e


def run_stages(cfg: RecognitionConfig) -> dict:
    """`stream_pretraining`: each listed stream trained alone (or a finished run of the same config
    reused), then this network with those streams copied from the runs' best checkpoints. Returns
    the last run's summary with `stages` (stream -> its summary)."""
    stages = {}
    for stream in cfg.stream_pretraining.streams:
        stage = absolute_paths(stage_config(cfg, stream))
        done = finished_summary(stage.run_dir, stage)
        if done:
            log.info("stream_pretraining: %s stage reused (%s finished with this config)", stream, stage.run_dir)
        stages[stream] = done or run(stage)
    data = cfg.model_dump(mode="json")
    data["stream_pretraining"] = {}
    for stream, summary in stages.items():
        data["pretrained"].update({f"{stream}_s3d": None, f"{stream}_prefix": None, f"{stream}_stream": summary["run_dir"]})
    final = run(RecognitionConfig.model_validate(data))
    return write_summary(final["run_dir"], {**final, "stages": stages})


def mixing_summary(corpora: list[dict]) -> dict:
    """Summary entries of the auxiliary corpora: per corpus its clips, gloss classes and those mapped
    into primary glosses; `aux_mapped_share` over all of them. Empty when the run does not mix."""
    if not corpora:
        return {}
    mapped, classes = sum(c["summary"].mapped for c in corpora), sum(c["summary"].classes for c in corpora)
    return {"auxiliary": {c["name"]: c["summary"].summary() for c in corpora}, "aux_mapped_share": mapped / max(1, classes)}


def run(cfg: RecognitionConfig) -> dict:
    """Train (or resume) on Ray Train and evaluate the best checkpoint on dev. Returns the summary
    (also `<run_dir>/best_checkpoint.json`): best checkpoint, its epoch, head and dev WERs. With
    `stream_pretraining.streams`, the single-stream stages first (`run_stages`)."""
    from training.evaluation import evaluate_sign2gloss

    if cfg.stream_pretraining.streams:
        return run_stages(cfg)
    cfg = absolute_paths(cfg)
    t0 = time.time()
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg.run_dir / "config.yaml")
    vocab, manifest, corpora = prepare_assets(cfg)
    primary = GlossVocabulary.load(cfg.run_dir / "assets" / "primary_vocab.json")
    decode_classes = len(primary) if cfg.decode.primary_classes_only and len(vocab) > len(primary) else None
    names = primary_train_names(cfg)
    train_videos = manifest["splits"][cfg.data.train_split]["written"] if names is None else len(names)
    if cfg.data.train_limit:
        train_videos = min(train_videos, cfg.data.train_limit)
    result = fit(train_loop_per_worker,
                 {"config": cfg.model_dump(mode="json"), "glosses": vocab.glosses, "corpus": manifest["corpus"],
                  "train_videos": train_videos, "keypoint_backend": manifest.get("keypoint_backend"),
                  "decode_classes": decode_classes,
                  "auxiliary": [{k: c[k] for k in ("name", "files", "labels")} for c in corpora]},
                 name=cfg.name, storage_path=cfg.out_dir, scaling=cfg.scaling, metric="dev_wer", mode="min",
                 datasets=lambda: {"train": split_dataset(cfg, cfg.data.train_split, cfg.data.train_limit, names),
                                   "dev": split_dataset(cfg, cfg.data.dev_split, cfg.data.dev_limit)},
                 split_datasets=("train",))
    best = result.best_metrics
    summary: dict[str, Any] = {**result.summary(cfg.run_dir, t0), "best_head": best["dev_head"], "best_dev_wer": best["dev_wer"],
                               "best_dev": {h: best[f"dev_wer_{h}"] for h in cfg.head_names()},
                               "train_videos": train_videos, "vocabulary": len(vocab.glosses), **mixing_summary(corpora)}
    write_summary(cfg.run_dir, summary)
    if cfg.final_eval:
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        final = evaluate_sign2gloss(result.best_checkpoint, split=cfg.data.dev_split,
                                    out_dir=cfg.run_dir / f"eval_{cfg.data.dev_split}", limit=cfg.data.dev_limit)
        summary.update(final_dev=final["wer"], final_head=final["head"], final_dev_wer=final["wer"][final["head"]],
                       final_beam_width=final["beam_width"])
    return write_summary(cfg.run_dir, {**summary, "wall_s": time.time() - t0, "finished": True})


def main(argv: list[str] | None = None) -> dict:
    return recipe_main(RecognitionConfig, run, __doc__.splitlines()[0], argv,
                       report=("best_epoch", "best_dev_wer", "final_dev_wer", "wall_s"))


if __name__ == "__main__":
    main()
