"""Sign2Text joint training on Ray Train: a Sign2Gloss checkpoint (backbone + visual head) and a
Gloss2Text checkpoint (mBART) joined by the V-L mapper, trained with CTC + translation
cross-entropy (Chen et al., CVPR 2022).

    python jobs/train_sign2text.py --config configs/sign2text/demo.yaml [key=value ...]

The driver loads both checkpoints and checks that they fit (training.checkpoint.load_sign2text_sources:
same gloss vocabulary, widths, mBART positions), joins them into the initial model and saves it in
`<out_dir>/<name>/assets/init/` (a Sign2Text checkpoint; re-running with other sources is an error).
With the backbone frozen (the paper's way, `train.finetune_backbone: false`) and
`data.feature_cache: true`, the backbone's features are computed once per video by a Ray Data pass
(training/feature_cache.py, cached beside the shards and reused while checkpoint and shards are
unchanged) and training reads them instead of frames; `data.feature_cache: false` runs the frozen
backbone at every step instead (bench/feature_cache.py compares the two). `train.finetune_backbone:
true` trains everything end to end from frames, with the papers' augmentation.

Each epoch: Adam with a learning rate per module (backbone, visual head, mapper, translation
network), a cosine schedule, gradient clipping, bf16 autocast on CUDA and DDP over several
workers; dev is translated (`decode.dev_num_beams`) and scored (BLEU-1..4, ROUGE-L; the gloss WER
of the recognizer's decode head beside them) and reported with a checkpoint; Ray keeps the best by
dev BLEU-4 and the latest. Re-running the same command resumes from the latest checkpoint. At the
end the best checkpoint translates dev from frames alone (training.evaluation.evaluate_sign2text).

Run directory: `assets/`, `checkpoint_*/` (model/ of family sign2text: frames or keypoints ->
glosses and text, with its gloss vocabulary, tokenizer and input settings), `metrics.jsonl`,
`learning_curve.png`, `best_checkpoint.json`, `eval_dev/`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from pydantic import Field

from common.config import StrictModel, save_config
from common.files import atomic_directory
from models.vl_mapper import MapperInput
from pipelines.recognition_batches import RecognitionCollate, in_share, shard_columns, train_batches
from pipelines.sign2text_batches import FeatureCollate, Sign2TextCollate, TextTargets
from pipelines.video_collate import rows_of
from training import state as train_state
from training.checkpoint import load_sign2text, load_sign2text_sources, save_sign2text, write_checkpoint
from training.cli import LOG_FORMAT, recipe_main
from training.distributed import autocast, gather, sync_buffers_from_rank0, worker_context, wrap_ddp
from training.evaluation import decode_sign2text, move_to, score_heads, score_texts
from training.ray_cluster import storage_path
from training.ray_train import ScalingSection, fit, report_epoch, write_summary
from training.run_log import CurveSpec, RunLog
from training.schedule import EpochBudget, make_lr_scheduler

log = logging.getLogger("train_sign2text")


# ---- configuration ------------------------------------------------------------------------------


class DataSection(StrictModel):
    shards: str  # root folder of preprocessed datasets (jobs/preprocess.py out_dir); the texts come from here
    dataset: str | None = None  # dataset folder under `shards`; None: `shards` itself
    train_split: str = "train"
    dev_split: str = "dev"
    # frozen backbone only: compute its features once per video and train from them (true), or run
    # the frozen backbone on the frames at every step (false; same model, slower)
    feature_cache: bool = True
    cache_dtype: Literal["float32", "float16"] = "float32"  # stored feature precision
    cache_actors: int = Field(1, ge=1)  # Ray Data actors holding the backbone (one GPU each on GPU clusters)
    cache_cpus: float = Field(0.5, ge=0)  # CPUs per actor
    # from frames: the papers' augmentation on training clips (the Sign2Gloss checkpoint's collate
    # settings; the cache holds evaluation-view features, so it does not apply there)
    augment: bool = True
    shuffle_buffer: int = Field(64, ge=0)  # rows in Ray Data's local shuffle buffer
    train_limit: int | None = None  # first N videos only (tests, smoke runs)
    dev_limit: int | None = None


class ModelSection(StrictModel):
    sign2gloss: str  # Sign2Gloss run directory (-> its best checkpoint) or checkpoint
    gloss2text: str  # Gloss2Text run directory or checkpoint (pretrained-and-pruned or from-scratch mBART)
    mapper_input: MapperInput = "gloss_features"  # the paper's ablation: gloss_probs, backbone_features
    mapper_hidden: int | None = None  # width of the mapper's two hidden layers; None: the mBART's d_model
    mapper_dropout: float = Field(0.1, ge=0, lt=1)


class OptimSection(StrictModel):
    lr_backbone: float = 1e-5  # only with train.finetune_backbone
    lr_visual_head: float = 1e-3
    lr_mapper: float = 1e-3
    lr_translation: float = 1e-5  # a pretrained mBART moves slowly; from scratch use more
    betas: tuple[float, float] = (0.9, 0.998)
    eps: float = 1e-8
    weight_decay: float = 1e-3  # Adam's L2 term, as the papers' code
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # max gradient norm; 0 = off


class LossSection(StrictModel):
    ctc_weight: float = Field(1.0, ge=0)  # x the recognizer's CTC loss (its heads; + KL for TwoStream)
    translation_weight: float = Field(1.0, ge=0)  # x the translation cross-entropy
    label_smoothing: float = Field(0.2, ge=0, lt=1)


class TrainSection(StrictModel):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(8, ge=1)  # clips per batch and worker
    seed: int = 0
    num_threads: int | None = 1  # torch intra-op threads per CPU worker
    max_minutes: float | None = None  # time budget: the cosine schedule is planned over the epochs that fit
    finetune_backbone: bool = False  # true: the backbone trains too (from frames, no feature cache)


class DecodeSection(StrictModel):
    num_beams: int = Field(5, ge=1)  # final evaluation
    dev_num_beams: int = Field(1, ge=1)  # per-epoch dev translation (1 = greedy)
    length_penalty: float = 1.0
    max_length: int = Field(100, ge=2)  # decoder tokens
    batch_size: int = Field(8, ge=1)


class Sign2TextConfig(StrictModel):
    name: str
    out_dir: str = "outputs/sign2text"
    data: DataSection
    model: ModelSection
    optim: OptimSection = OptimSection()
    loss: LossSection = LossSection()
    train: TrainSection = TrainSection()
    decode: DecodeSection = DecodeSection()
    scaling: ScalingSection = ScalingSection()
    final_eval: bool = True  # translate dev from frames with the best checkpoint and `decode` at the end

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def uses_cache(self) -> bool:
        return self.data.feature_cache and not self.train.finetune_backbone


def absolute_paths(cfg: Sign2TextConfig) -> Sign2TextConfig:
    """Relative paths made absolute (training.ray_cluster.storage_path: under $SIGNBRIDGE_STORAGE
    when set, else the current directory), as Ray workers may run elsewhere."""
    cfg = cfg.model_copy(deep=True)
    cfg.out_dir, cfg.data.shards = storage_path(cfg.out_dir), storage_path(cfg.data.shards)
    cfg.model.sign2gloss, cfg.model.gloss2text = storage_path(cfg.model.sign2gloss), storage_path(cfg.model.gloss2text)
    return cfg


# ---- assets: the two checkpoints joined into the initial model (driver, once per run) -------------


def build_model(cfg: Sign2TextConfig):
    """SignToText from the configured Sign2Gloss and Gloss2Text checkpoints (checked to fit), and
    those two loaded checkpoints."""
    from models.sign2text import SignToText, mapper_in_features
    from models.vl_mapper import VLMapper

    s2g, g2t, class_to_gloss = load_sign2text_sources(cfg.model.sign2gloss, cfg.model.gloss2text)
    torch.manual_seed(cfg.train.seed)
    kind = cfg.model.mapper_input
    mapper = VLMapper(kind, mapper_in_features(s2g.model, kind), g2t.model.config.d_model, hidden=cfg.model.mapper_hidden,
                      dropout=cfg.model.mapper_dropout)
    if kind == "gloss_probs":
        mapper.init_from_gloss_embeddings(g2t.model.gloss_table().detach(), class_to_gloss)
    model = SignToText(s2g.model, mapper, g2t.model, freeze_backbone=not cfg.train.finetune_backbone)
    return model, s2g, g2t


def prepare_assets(cfg: Sign2TextConfig) -> tuple[Path, dict]:
    """`<run_dir>/assets/init/` (the initial model as a Sign2Text checkpoint) and the shards'
    manifest. Built once; a re-run with other sources or model settings is an error."""
    from pipelines.shards import dataset_uri, read_manifest

    manifest = read_manifest(cfg.data.shards, cfg.data.dataset)
    for split in (cfg.data.train_split, cfg.data.dev_split):
        if split not in manifest["splits"]:
            raise KeyError(f"{dataset_uri(cfg.data.shards, cfg.data.dataset)}: split {split!r} was not preprocessed")
    assets = cfg.run_dir / "assets"
    spec = {"model": cfg.model.model_dump(mode="json"), "seed": cfg.train.seed, "finetune_backbone": cfg.train.finetune_backbone}
    if (assets / "spec.json").exists():
        old = json.loads((assets / "spec.json").read_text())
        if old != spec:
            raise ValueError(f"{cfg.run_dir}: this run started from other checkpoints or model settings ({old} vs {spec}); "
                             "choose another name= or delete the run directory")
        return assets, manifest
    model, s2g, g2t = build_model(cfg)
    if s2g.uses_keypoints and manifest.get("keypoint_backend") in (None, "none"):
        raise ValueError(f"{cfg.data.shards}: the shards have no keypoints but the Sign2Gloss model has a keypoint stream")
    with atomic_directory(assets) as tmp:
        save_sign2text(tmp / "init" / "model", model=model, vocab=s2g.vocab, tokenizer_dir=g2t.path / "model" / "tokenizer",
                       collate=s2g.collate, text=g2t.text, frame_stride=s2g.frame_stride, keypoint_backend=s2g.keypoint_backend)
        (tmp / "spec.json").write_text(json.dumps(spec))
    log.info("initial Sign2Text model from %s and %s in %s", s2g.path, g2t.path, assets / "init")
    return assets, manifest


# ---- data -----------------------------------------------------------------------------------------


def make_datasets(cfg: Sign2TextConfig, cache: dict | None, uses_keypoints: bool) -> dict:
    """Ray Datasets of the train and dev splits: cached features, or shard rows with frames."""
    from pipelines.shards import read_shards
    from training.feature_cache import read_feature_split

    out = {}
    for key, split, limit in (("train", cfg.data.train_split, cfg.data.train_limit), ("dev", cfg.data.dev_split, cfg.data.dev_limit)):
        if cache is not None:
            ds = read_feature_split(cache["splits"][split])
        else:
            ds = read_shards(cfg.data.shards, cfg.data.dataset, split, columns=shard_columns(uses_keypoints) + ["text"])
        out[key] = ds.limit(limit) if limit and cache is None else ds
    return out


def make_collate(cfg: Sign2TextConfig, ck, *, train: bool, generator: int | None = None) -> Sign2TextCollate:
    """The batch maker of a loaded Sign2Text checkpoint `ck`: cached features or frames (+ text)."""
    targets = TextTargets(ck.tokenizer, ck.tokenizer.lang_id(ck.text["tgt_lang"]), ck.text["max_target_length"])
    if cfg.uses_cache():
        return Sign2TextCollate(FeatureCollate(ck.vocab.glosses, ck.model.recognizer.config.streams), targets)
    visual = RecognitionCollate(ck.collate, train=train and cfg.data.augment, glosses=ck.vocab.glosses,
                                frame_stride=ck.frame_stride, generator=generator)
    return Sign2TextCollate(visual, targets)


def epoch_batches(shard, collate: Sign2TextCollate, cfg: Sign2TextConfig, epoch: int, rank: int) -> Iterator[dict]:
    """This worker's training batches of one epoch (local shuffle; frames batched by length)."""
    seed = (cfg.train.seed * 1000 + epoch) * 64 + rank
    if isinstance(collate.visual, RecognitionCollate):
        for batch in train_batches(shard, collate.visual, None, batch_size=cfg.train.batch_size, shuffle_buffer=cfg.data.shuffle_buffer,
                                   replay=False, shuffle_seed=seed, order_seed=cfg.train.seed * 1000 + epoch):
            yield {**batch, **collate.targets(batch["texts"], batch["names"])}
        return
    for rows in shard.iter_batches(batch_size=cfg.train.batch_size, batch_format="numpy",
                                   local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
                                   local_shuffle_seed=seed if cfg.data.shuffle_buffer else None):
        yield collate(rows)


# ---- optimizer -------------------------------------------------------------------------------------


def make_optimizer(model, cfg: Sign2TextConfig) -> torch.optim.Adam:
    """Adam with one parameter group per module: backbone (when fine-tuned), visual head (the
    recognizer's main heads), V-L mapper, translation network."""
    o = cfg.optim
    backbone = {id(p) for m in model.backbone_modules() for p in m.parameters()}
    parts = [("backbone", [p for p in model.recognizer.parameters() if id(p) in backbone], o.lr_backbone),
             ("visual_head", list(model.recognizer.heads.parameters()), o.lr_visual_head),
             ("mapper", list(model.mapper.parameters()), o.lr_mapper),
             ("translation", list(model.translator.parameters()), o.lr_translation)]
    groups = [{"name": n, "params": [p for p in ps if p.requires_grad], "lr": lr} for n, ps, lr in parts]
    return torch.optim.Adam([g for g in groups if g["params"]], betas=o.betas, eps=o.eps, weight_decay=o.weight_decay,
                            foreach=True)


# ---- the training epoch ----------------------------------------------------------------------------


def train_epoch(model, ddp_model, batches, optimizer, scheduler, progress: train_state.Progress, cfg: Sign2TextConfig,
                device: torch.device) -> dict:
    """One epoch over `batches`: an optimizer step per batch. Returns this worker's sums: loss parts
    (x clips), clips, infeasible CTC samples, optimizer steps, clipped steps."""
    sums: dict[str, Any] = {"losses": {}, "clips": 0, "infeasible": 0, "steps": 0, "clipped": 0}
    params = [p for p in model.parameters() if p.requires_grad]
    for batch in batches:
        batch = move_to(batch, device)
        with autocast(device):
            loss, parts = ddp_model(batch, label_smoothing=cfg.loss.label_smoothing, ctc_weight=cfg.loss.ctc_weight,
                                    translation_weight=cfg.loss.translation_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip or math.inf))
        optimizer.step()
        scheduler.step()
        progress.step += 1
        n = len(batch["names"])
        sums["infeasible"] += int(parts.pop("infeasible"))
        for k, v in parts.items():
            sums["losses"][k] = sums["losses"].get(k, 0.0) + float(v) * n
        sums["clips"] += n
        sums["steps"] += 1
        sums["clipped"] += int(0 < cfg.optim.grad_clip < norm)
    return sums


def train_metrics(per_worker: list[dict], seconds: float) -> dict:
    clips = sum(w["clips"] for w in per_worker)
    keys = per_worker[0]["losses"].keys()
    losses = {k: sum(w["losses"].get(k, 0.0) for w in per_worker) / max(1, clips) for k in keys}
    return {"train_loss": losses.pop("total", float("nan")), **{f"train_{k}": v for k, v in losses.items()},
            "train_clips": clips, "train_infeasible": sum(w["infeasible"] for w in per_worker),
            "train_clipped": per_worker[0]["clipped"] / max(1, per_worker[0]["steps"]),
            "train_clips_per_s": clips / max(1e-9, seconds)}


# ---- the dev evaluation ------------------------------------------------------------------------------


def evaluate_dev(model, rows: list[dict], collate: Sign2TextCollate, ck, cfg: Sign2TextConfig, corpus: str, level: str,
                 device: torch.device) -> dict:
    """Translate this worker's dev rows, gather every worker's and score them: BLEU-1..4, ROUGE-L,
    and the gloss WER of the recognizer's decode head (greedy)."""
    bs = cfg.decode.batch_size
    batches = (collate(rows[i : i + bs]) for i in range(0, len(rows), bs))
    dec = decode_sign2text(model, batches, ck.tokenizer, ck.vocab, num_beams=cfg.decode.dev_num_beams,
                           length_penalty=cfg.decode.length_penalty, max_length=cfg.decode.max_length, device=device)
    parts = gather(dec)
    merged = {k: [x for p in parts for x in p[k]] for k in ("texts", "hyps", "glosses", "gloss_hyps")}
    scores = score_texts(merged["hyps"], merged["texts"], level)
    wer = score_heads(merged["glosses"], {"gloss": merged["gloss_hyps"]}, corpus)["gloss"]["wer"]
    return {**{f"dev_{k}": v for k, v in scores.items()}, "dev_wer": wer, "dev_sentences": len(merged["texts"])}


def dev_share(dev_shard, rank: int, world: int) -> list[dict]:
    """This worker's dev rows (every worker reads the whole split and keeps its share by name)."""
    return [r for b in dev_shard.iter_batches(batch_format="numpy", batch_size=16) for r in rows_of(b)
            if in_share(str(r["name"]), rank, world)]


# ---- the Ray Train worker --------------------------------------------------------------------------------


def train_loop_per_worker(loop_config: dict) -> dict:
    import ray.train

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    cfg = Sign2TextConfig.model_validate(loop_config["config"])
    rank, world, device = worker_context()
    if cfg.train.num_threads and device.type == "cpu":
        torch.set_num_threads(cfg.train.num_threads)
    ck = load_sign2text(loop_config["init"])
    model = ck.model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = max(1, math.ceil((loop_config["train_videos"] // world) / cfg.train.batch_size))
    budget = EpochBudget(cfg.train.epochs, cfg.train.max_minutes, steps_per_epoch)
    o = cfg.optim
    scheduler = make_lr_scheduler(optimizer, budget.total_steps, warmup_steps=o.warmup_steps, schedule=o.schedule,
                                  min_lr_ratio=o.min_lr_ratio)
    progress, _ = train_state.resume(ray.train.get_checkpoint(), model=model, optimizer=optimizer, scheduler=scheduler,
                                     map_location=device, rank=rank)
    ddp_model = wrap_ddp(model, world, find_unused_parameters=True)
    train_shard, dev_shard = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("dev")
    run_log = RunLog(cfg.run_dir, CurveSpec((("dev_bleu4", "dev BLEU-4"),), "dev BLEU-4",
                                            (("train_loss", "train loss"),), "train loss (CTC + translation)"))
    dev_rows, first_epoch = None, progress.epoch
    for epoch in budget.epochs(progress):
        t0 = time.time()
        model.train()
        collate = make_collate(cfg, ck, train=True, generator=hash((cfg.train.seed, epoch, rank)) % 2**32)
        sums = train_epoch(model, ddp_model, epoch_batches(train_shard, collate, cfg, epoch, rank), optimizer, scheduler,
                           progress, cfg, device)
        train_s = time.time() - t0
        if world > 1:
            sync_buffers_from_rank0(model)
        t1 = time.time()
        dev_rows = dev_rows if dev_rows is not None else dev_share(dev_shard, rank, world)
        dev = evaluate_dev(model, dev_rows, make_collate(cfg, ck, train=False), ck, cfg, loop_config["corpus"],
                           loop_config["level"], device)
        metrics = {"epoch": epoch + 1, "step": progress.step, "lr": optimizer.param_groups[0]["lr"],
                   "planned_epochs": budget.planned, **train_metrics(gather(sums), train_s), **dev,
                   "epoch_train_s": train_s, "epoch_eval_s": time.time() - t1, "elapsed_s": progress.elapsed_s(),
                   "wall_time": time.time()}
        progress.end_epoch(metrics)
        if rank == 0:
            run_log.write(progress.history)
        state = train_state.capture(progress, optimizer=optimizer, scheduler=scheduler) if rank == 0 else None
        report_epoch(metrics, rank=rank, save=lambda d: write_checkpoint(
            d, save_model=lambda m: save_sign2text(m, model=model, vocab=ck.vocab, tokenizer_dir=ck.path / "model" / "tokenizer",
                                                   collate=ck.collate, text=ck.text, frame_stride=ck.frame_stride,
                                                   keypoint_backend=ck.keypoint_backend),
            train_state=state, run_config=cfg, metrics=metrics))
    run_log.close()
    return {"epochs_run": [h["epoch"] for h in progress.history if h["epoch"] > first_epoch]}


# ---- driver ---------------------------------------------------------------------------------------------


def run(cfg: Sign2TextConfig) -> dict:
    """Join the two checkpoints, build (or find) the feature cache, train (or resume) on Ray Train
    and translate dev with the best checkpoint. Returns the summary (also `<run_dir>/best_checkpoint.json`)."""
    from metrics.translation import level_for
    from training.evaluation import evaluate_sign2text
    from training.feature_cache import build_feature_cache

    cfg = absolute_paths(cfg)
    t0 = time.time()
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg.run_dir / "config.yaml")
    assets, manifest = prepare_assets(cfg)
    init = load_sign2text(assets / "init")
    cache = None
    if cfg.uses_cache():
        d = cfg.data
        cache = build_feature_cache(cfg.model.sign2gloss, d.shards, d.dataset, [d.train_split, d.dev_split], dtype=d.cache_dtype,
                                    actors=d.cache_actors, cpus_per_actor=d.cache_cpus,
                                    limits={d.train_split: d.train_limit, d.dev_split: d.dev_limit})
    train_videos = manifest["splits"][cfg.data.train_split]["written"]
    if cfg.data.train_limit:
        train_videos = min(train_videos, cfg.data.train_limit)
    result = fit(train_loop_per_worker,
                 {"config": cfg.model_dump(mode="json"), "init": str(assets / "init"), "corpus": manifest["corpus"],
                  "level": level_for(manifest["corpus"]), "train_videos": train_videos},
                 name=cfg.name, storage_path=cfg.out_dir, scaling=cfg.scaling, metric="dev_bleu4", mode="max",
                 datasets=lambda: make_datasets(cfg, cache, init.uses_keypoints), split_datasets=("train",))
    best = {k: result.best_metrics[k] for k in ("dev_bleu1", "dev_bleu2", "dev_bleu3", "dev_bleu4", "dev_rouge", "dev_wer")}
    summary: dict[str, Any] = {**result.summary(cfg.run_dir, t0), "best_dev": best,
                               "feature_cache": None if cache is None else {k: cache[k] for k in ("dir", "key", "computed", "seconds")}}
    write_summary(cfg.run_dir, summary)
    if cfg.final_eval:
        final = evaluate_sign2text(result.best_checkpoint, split=cfg.data.dev_split, out_dir=cfg.run_dir / f"eval_{cfg.data.dev_split}",
                                   limit=cfg.data.dev_limit)
        summary.update(final_dev=final["scores"], final_dev_wer=final["wer"], final_decode=final["decode"])
    return write_summary(cfg.run_dir, {**summary, "wall_s": time.time() - t0, "finished": True})


def main(argv: list[str] | None = None) -> dict:
    return recipe_main(Sign2TextConfig, run, __doc__.splitlines()[0], argv,
                       report=("best_epoch", "best_dev.dev_bleu4", "final_dev.bleu4", "final_dev.rouge", "wall_s"))


if __name__ == "__main__":
    main()
