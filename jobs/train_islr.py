"""Multilingual isolated-sign recognition (Wei & Chen, ICCV 2023) on Ray Train: a shared visual encoder
and one classification layer per language, trained on sign dictionaries (jobs/build_dictionary.py).

    python jobs/train_islr.py --config configs/islr/demo.yaml [key=value ...]

Each entry of `data.languages` is one language's dictionary; the first is the primary language. A
language keeps the glosses with at least `min_count` training clips (the paper: 8 on PHOENIX-2014T,
20 on CSL-Daily); the class lists are fixed in `<run_dir>/assets/classes.json` on the first run, and
the clips of dropped glosses are left out of training and dev (counted in the summary). With one
dictionary this is single-language ISLR on any isolated-sign corpus (the first paper's WLASL step).

Model (models/islr.py): S3D with five blocks and average pooling (`model.encoder: s3d`) or
TwoStream-SLR's two streams (`two_stream`), optionally started from a Sign2Gloss checkpoint
(`pretrained.sign2gloss`), then one linear layer per language. Loss: the sum over languages of the
cross-entropy of that language's clips in the batch, label smoothing 0.2. Clips are brought to
`data.clip_frames` (16) frames: cut at a random start in training (centred in evaluation), padded by
repeating their end frames (pipelines/islr_batches.py); the papers' crop and colour jitter in training.
Adam (0.9, 0.998), weight decay 1e-3, cosine schedule, bf16 autocast and DDP on GPUs.

Every epoch dev is scored per language: per-instance and per-class top-1 / top-5 (metrics/
classification.py); `dev_top1`, the primary language's per-instance top-1, picks the best checkpoint.
Re-running the same command resumes from the latest checkpoint. Run directory as every recipe's
(docs/DEVELOPING.md): `assets/classes.json`, `checkpoint_*/` (model/ per training/checkpoint.py's
"islr" family: weights, config with each language's class list and the clip settings),
`metrics.jsonl`, `learning_curve.png`, TensorBoard events, `best_checkpoint.json`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from common.config import StrictModel, save_config
from common.files import atomic_write_json
from metrics.classification import topk_accuracy
from models.islr import ISLRConfig, ISLRModel, islr_loss, load_encoder_from_sign2gloss
from pipelines.dictionary import gloss_counts, read_dictionary, read_dictionary_manifest, read_dictionary_table
from pipelines.islr_batches import ISLRCollate, clip_batches, keeps_class, select_classes
from pipelines.recognition_batches import in_share
from pipelines.video_collate import VideoCollateConfig, rows_of
from training import state as train_state
from training.checkpoint import load_sign2gloss, save_islr, write_checkpoint
from training.cli import LOG_FORMAT, recipe_main
from training.distributed import autocast, gather, sync_buffers_from_rank0, worker_context, wrap_ddp
from training.ray_train import ScalingSection, fit, report_epoch, write_summary
from training.run_log import CurveSpec, RunLog
from training.schedule import EpochBudget, make_lr_scheduler

log = logging.getLogger("train_islr")

CLASSES_FILE = "classes.json"


# ---- configuration ------------------------------------------------------------------------------------


class LanguageSection(StrictModel):
    dictionary: str  # one language's dictionary folder (jobs/build_dictionary.py output)
    min_count: int = Field(1, ge=1)  # glosses with fewer training clips are dropped


class DataSection(StrictModel):
    languages: list[LanguageSection] = Field(min_length=1)  # the first: the primary language
    train_split: str = "train"
    dev_split: str = "dev"
    clip_frames: int = Field(16, ge=1)
    collate: VideoCollateConfig = VideoCollateConfig()
    shuffle_buffer: int = Field(256, ge=0)  # rows in Ray Data's local shuffle buffer
    cache_dev: bool = True  # each worker keeps its dev rows in memory after the first epoch


class OptimSection(StrictModel):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.998)
    eps: float = 1e-8
    weight_decay: float = 1e-3
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0: off


class TrainSection(StrictModel):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(8, ge=1)  # clips per batch and worker
    seed: int = 0
    num_threads: int | None = 1  # torch intra-op threads per CPU worker
    max_minutes: float | None = None  # time budget (the cosine schedule follows the epochs that fit)
    label_smoothing: float = Field(0.2, ge=0, lt=1)


class PretrainedSection(StrictModel):
    sign2gloss: str | None = None  # a Sign2Gloss checkpoint or run directory whose streams start the encoder


class ISLRRecipeConfig(StrictModel):
    name: str
    out_dir: str = "outputs/islr"
    data: DataSection
    model: dict[str, Any] = {}  # models.islr.ISLRConfig fields except num_classes (set from the class lists)
    pretrained: PretrainedSection = PretrainedSection()
    optim: OptimSection = OptimSection()
    train: TrainSection = TrainSection()
    eval_batch_size: int = Field(16, ge=1)
    scaling: ScalingSection = ScalingSection()

    @model_validator(mode="after")
    def _check_model(self) -> "ISLRRecipeConfig":
        if "num_classes" in self.model:
            raise ValueError("model.num_classes is set from the dictionaries' class lists; leave it out")
        self.model_config_for({"x": ["a"]})
        return self

    def model_config_for(self, classes: dict[str, list[str]]) -> ISLRConfig:
        return ISLRConfig.model_validate({**self.model, "num_classes": {lang: len(gs) for lang, gs in classes.items()}})

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def absolute_paths(cfg: ISLRRecipeConfig) -> ISLRRecipeConfig:
    """Local paths resolved against the current directory (Ray workers may run elsewhere)."""
    cfg = cfg.model_copy(deep=True)
    cfg.out_dir = str(Path(cfg.out_dir).resolve())
    for lang in cfg.data.languages:
        if "://" not in lang.dictionary:
            lang.dictionary = str(Path(lang.dictionary).resolve())
    if cfg.pretrained.sign2gloss:
        cfg.pretrained.sign2gloss = str(Path(cfg.pretrained.sign2gloss).resolve())
    return cfg


# ---- data: class lists (driver), Ray Datasets ------------------------------------------------------------


def prepare_classes(cfg: ISLRRecipeConfig) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """Each language's classes (glosses with at least min_count training clips), fixed in
    `<run_dir>/assets/classes.json` on the first run, and per language the clip counts kept and dropped."""
    languages, counts, dev = {}, {}, {}
    for section in cfg.data.languages:
        lang = read_dictionary_manifest(section.dictionary)["language"]
        if lang in languages:
            raise ValueError(f"data.languages: two dictionaries of language {lang!r} ({languages[lang]}, {section.dictionary})")
        languages[lang] = section.dictionary
        counts[lang] = gloss_counts(read_dictionary_table(section.dictionary, cfg.data.train_split, ["gloss"]).to_pylist())
        dev[lang] = gloss_counts(read_dictionary_table(section.dictionary, cfg.data.dev_split, ["gloss"]).to_pylist())
    path = cfg.run_dir / "assets" / CLASSES_FILE
    if path.exists():
        classes = json.loads(path.read_text())
    else:
        classes = select_classes(counts, {lang: s.min_count for lang, s in zip(languages, cfg.data.languages)})
        for (lang, gs), section in zip(classes.items(), cfg.data.languages):
            if not gs:
                raise ValueError(f"{section.dictionary}: no gloss of {lang} has {section.min_count} training clips "
                                 f"(the most frequent has {max(counts[lang].values(), default=0)}); lower min_count")
        atomic_write_json(path, classes)
    info = {}
    for lang, gs in classes.items():
        keep = set(gs)
        info[lang] = {"dictionary": languages[lang], "classes": len(gs), "dropped_classes": len(set(counts[lang]) - keep),
                      "train_clips": sum(n for g, n in counts[lang].items() if g in keep),
                      "train_dropped": sum(n for g, n in counts[lang].items() if g not in keep),
                      "dev_clips": sum(n for g, n in dev[lang].items() if g in keep),
                      "dev_dropped": sum(n for g, n in dev[lang].items() if g not in keep)}
    return classes, info


def clip_columns(uses_keypoints: bool) -> list[str]:
    cols = ["name", "language", "gloss", "num_frames", "height", "width", "frames"]
    return cols + (["keypoints"] if uses_keypoints else [])


def split_dataset(cfg: ISLRRecipeConfig, classes: dict[str, list[str]], split: str):
    """Every language's clips of `split` whose gloss is a class (one Ray Dataset)."""
    uses_keypoints = cfg.model_config_for(classes).uses_keypoints
    parts = [read_dictionary(s.dictionary, split, clip_columns(uses_keypoints)) for s in cfg.data.languages]
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return ds.filter(partial(keeps_class, classes=classes))


# ---- model, optimizer, one epoch --------------------------------------------------------------------------


def build_model(cfg: ISLRRecipeConfig, classes: dict[str, list[str]], *, fresh: bool) -> ISLRModel:
    """The ISLR model (seeded); a fresh run starts its encoder from `pretrained.sign2gloss`."""
    torch.manual_seed(cfg.train.seed)
    model = ISLRModel(cfg.model_config_for(classes))
    if fresh and cfg.pretrained.sign2gloss:
        try:
            copied = load_encoder_from_sign2gloss(model, load_sign2gloss(cfg.pretrained.sign2gloss).model.state_dict())
        except (FileNotFoundError, ValueError) as e:
            raise ValueError(f"pretrained.sign2gloss {cfg.pretrained.sign2gloss}: {e}") from e
        log.info("encoder: %d tensors from %s", len(copied), cfg.pretrained.sign2gloss)
    return model


def train_step(model, ddp_model, batch: dict, optimizer, scheduler, cfg: ISLRRecipeConfig, device: torch.device) -> dict:
    """One optimizer step on a collated batch. Returns the loss and each language's term (floats)."""
    optimizer.zero_grad(set_to_none=True)
    keypoints = batch["keypoints"].to(device) if model.config.uses_keypoints else None
    with autocast(device):
        logits = ddp_model(batch["frames"].to(device, non_blocking=True), keypoints)
    loss, parts = islr_loss(logits, batch["language"].to(device), batch["targets"].to(device), cfg.train.label_smoothing)
    loss.backward()
    if cfg.optim.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    optimizer.step()
    scheduler.step()
    return {"loss": float(loss.detach()), **parts}


def train_epoch(model, ddp_model, batches: Iterable[dict], optimizer, scheduler, progress: train_state.Progress,
                cfg: ISLRRecipeConfig, device: torch.device) -> dict:
    """One epoch; this worker's sums: loss (x clips), clips per language, clips, steps."""
    ddp_model.train()
    sums = {"loss": 0.0, "clips": 0, "steps": 0, "per_language": {}}
    for batch in batches:
        n = len(batch["names"])
        parts = train_step(model, ddp_model, batch, optimizer, scheduler, cfg, device)
        progress.step += 1
        sums["loss"] += parts.pop("loss") * n
        sums["clips"] += n
        sums["steps"] += 1
        for lang, count in zip(*np.unique(batch["language"].numpy(), return_counts=True)):
            key = list(model.config.num_classes)[int(lang)]
            sums["per_language"][key] = sums["per_language"].get(key, 0) + int(count)
    return sums


# ---- the dev evaluation ----------------------------------------------------------------------------------------


def evaluate_clips(model: ISLRModel, rows: list[dict], classes: dict[str, list[str]], collate: VideoCollateConfig, *,
                   clip_frames: int, batch_size: int, device: torch.device) -> dict:
    """Score this worker's dev rows with every head, gather all workers' and compute per language
    the per-instance and per-class top-1 / top-5 (percent) under the language's own head."""
    model.eval()
    clips = ISLRCollate(collate, train=False, classes=classes, clip_frames=clip_frames)
    scores: dict[str, list[np.ndarray]] = {lang: [] for lang in classes}
    targets: dict[str, list[np.ndarray]] = {lang: [] for lang in classes}
    with torch.no_grad():
        for batch in clip_batches([rows], clips, batch_size):
            with autocast(device):
                logits = model(batch["frames"].to(device), batch["keypoints"].to(device) if model.config.uses_keypoints else None)
            for k, lang in enumerate(classes):
                mine = batch["language"] == k
                scores[lang].append(logits[lang][mine.to(device)].float().cpu().numpy())
                targets[lang].append(batch["targets"][mine].numpy())
    parts = gather({lang: (np.concatenate(scores[lang] or [np.zeros((0, len(classes[lang])))]),
                           np.concatenate(targets[lang] or [np.zeros(0, np.int64)])) for lang in classes})
    metrics = {}
    for lang in classes:
        s = np.concatenate([p[lang][0] for p in parts])
        t = np.concatenate([p[lang][1] for p in parts]).astype(np.int64)
        metrics[f"dev_{lang}_clips"] = len(t)
        metrics.update({f"dev_{lang}_{k}": v for k, v in topk_accuracy(s, t, (1, 5)).items()})
    primary = next(iter(classes))
    return {**metrics, "dev_top1": metrics[f"dev_{primary}_top1"], "dev_top5": metrics[f"dev_{primary}_top5"]}


# ---- the Ray Train worker ---------------------------------------------------------------------------------------


def dev_share(dev_shard, batch_size: int, rank: int, world: int) -> list[dict]:
    """This worker's dev rows (every worker reads the whole split and keeps its share by name)."""
    return [r for b in dev_shard.iter_batches(batch_format="numpy", batch_size=batch_size)
            for r in rows_of(b) if in_share(str(r["name"]), rank, world)]


def train_loop_per_worker(loop_config: dict) -> dict:
    import ray.train

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    cfg, classes = ISLRRecipeConfig.model_validate(loop_config["config"]), loop_config["classes"]
    rank, world, device = worker_context()
    if cfg.train.num_threads and device.type == "cpu":
        torch.set_num_threads(cfg.train.num_threads)
    checkpoint = ray.train.get_checkpoint()
    model = build_model(cfg, classes, fresh=checkpoint is None).to(device)
    o = cfg.optim
    optimizer = torch.optim.Adam(model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    budget = EpochBudget(cfg.train.epochs, cfg.train.max_minutes,
                         max(1, math.ceil((loop_config["train_clips"] // world) / cfg.train.batch_size)))
    scheduler = make_lr_scheduler(optimizer, budget.total_steps, warmup_steps=o.warmup_steps, schedule=o.schedule,
                                  min_lr_ratio=o.min_lr_ratio)
    progress, _ = train_state.resume(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, map_location=device, rank=rank)
    ddp_model = wrap_ddp(model, world)
    train_shard, dev_shard = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("dev")
    primary = next(iter(classes))
    run_log = RunLog(cfg.run_dir, CurveSpec(((f"dev_{primary}_top1", f"{primary} top-1"), (f"dev_{primary}_class_top1",
                                                                                          f"{primary} per-class top-1")),
                                            "dev accuracy (%)", (("train_loss", "train loss"),), "train loss (sum of CE)"))
    dev_rows, first_epoch = None, progress.epoch
    for epoch in budget.epochs(progress):
        t0 = time.time()
        collate = ISLRCollate(cfg.data.collate, train=True, classes=classes, clip_frames=cfg.data.clip_frames,
                              generator=hash((cfg.train.seed, epoch, rank)) % 2**32)
        rows = train_shard.iter_batches(batch_size=cfg.train.batch_size, batch_format="numpy",
                                        local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
                                        local_shuffle_seed=(cfg.train.seed * 1000 + epoch) * 64 + rank if cfg.data.shuffle_buffer else None)
        sums = train_epoch(model, ddp_model, clip_batches(rows, collate, cfg.train.batch_size), optimizer, scheduler,
                           progress, cfg, device)
        train_s = time.time() - t0
        if world > 1:
            sync_buffers_from_rank0(model)
        rows = dev_rows if dev_rows is not None else dev_share(dev_shard, cfg.eval_batch_size, rank, world)
        dev_rows = rows if cfg.data.cache_dev else None
        dev = evaluate_clips(model, rows, classes, cfg.data.collate, clip_frames=cfg.data.clip_frames,
                             batch_size=cfg.eval_batch_size, device=device)
        every = gather(sums)
        clips = sum(w["clips"] for w in every)
        metrics = {"epoch": epoch + 1, "step": progress.step, "lr": optimizer.param_groups[0]["lr"], "planned_epochs": budget.planned,
                   "train_loss": sum(w["loss"] for w in every) / max(1, clips), "train_clips": clips,
                   **{f"train_{lang}_clips": sum(w["per_language"].get(lang, 0) for w in every) for lang in classes},
                   "train_clips_per_s": clips / max(1e-9, train_s), **dev, "epoch_train_s": train_s,
                   "epoch_eval_s": time.time() - t0 - train_s, "elapsed_s": progress.elapsed_s(), "wall_time": time.time()}
        progress.end_epoch(metrics)
        if rank == 0:
            run_log.write(progress.history)
        state = train_state.capture(progress, optimizer=optimizer, scheduler=scheduler) if rank == 0 else None
        report_epoch(metrics, rank=rank, save=lambda d: write_checkpoint(
            d, save_model=lambda m: save_islr(m, model=model, classes=classes, collate=cfg.data.collate,
                                              clip_frames=cfg.data.clip_frames),
            train_state=state, run_config=cfg, metrics=metrics))
    run_log.close()
    return {"epochs_run": [h["epoch"] for h in progress.history if h["epoch"] > first_epoch]}


# ---- driver -------------------------------------------------------------------------------------------------------


def run(cfg: ISLRRecipeConfig) -> dict:
    """Train (or resume) on Ray Train. Returns the summary (also `<run_dir>/best_checkpoint.json`):
    best checkpoint and epoch, its dev metrics per language, the classes and clips kept per language."""
    cfg = absolute_paths(cfg)
    t0 = time.time()
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg.run_dir / "config.yaml")
    classes, info = prepare_classes(cfg)
    for lang, i in info.items():
        log.info("%s: %d classes (%d dropped below min_count), %d training clips (%d dropped), %d dev clips (%d dropped)",
                 lang, i["classes"], i["dropped_classes"], i["train_clips"], i["train_dropped"], i["dev_clips"], i["dev_dropped"])
    result = fit(train_loop_per_worker,
                 {"config": cfg.model_dump(mode="json"), "classes": classes, "train_clips": sum(i["train_clips"] for i in info.values())},
                 name=cfg.name, storage_path=cfg.out_dir, scaling=cfg.scaling, metric="dev_top1", mode="max",
                 datasets=lambda: {"train": split_dataset(cfg, classes, cfg.data.train_split),
                                   "dev": split_dataset(cfg, classes, cfg.data.dev_split)},
                 split_datasets=("train",))
    best = result.best_metrics
    summary = {**result.summary(cfg.run_dir, t0), "languages": info, "best_dev_top1": best["dev_top1"],
               "best_dev": {k: v for k, v in best.items() if k.startswith("dev_")}, "wall_s": time.time() - t0, "finished": True}
    return write_summary(cfg.run_dir, summary)


def main(argv: list[str] | None = None) -> dict:
    return recipe_main(ISLRRecipeConfig, run, __doc__.splitlines()[0], argv, report=("best_epoch", "best_dev_top1", "wall_s"))


if __name__ == "__main__":
    main()
