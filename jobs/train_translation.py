"""Gloss2Text training on Ray Train: mBART (from scratch or a pruned local checkpoint) translating
gloss sequences into text.

    python jobs/train_translation.py --config configs/translation/phoenix2014t_g2t.yaml [key=value ...]

The driver prepares the run's assets once (`<out_dir>/<name>/assets/`: the text tokenizer —
a SentencePiece model trained on the training split, or the pruned mBART — and the gloss
vocabulary), then runs `TorchTrainer`. Each epoch every worker trains on its share of the
length-bucketed batches; dev is decoded (greedy by default), scored (BLEU-1..4, ROUGE-L) and
reported with a checkpoint (`ray.train.report`); Ray keeps the best checkpoints by dev BLEU-4 and
always the latest. Re-running the same command resumes from the latest checkpoint (never repeating
a finished epoch). At the end the best checkpoint is decoded on dev with the final decoding
settings (beam 5 by default) and its hypotheses are written next to the references.

Run directory: `assets/`, `checkpoint_*/` (Ray), `metrics.jsonl` (one line per epoch),
`learning_curve.png`, `best_checkpoint.json`, `eval_dev/` (final hypotheses and scores).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import torch

from jobs.config import StrictModel, job_argument_parser, load_config, save_config
from pipelines.corpora import CorpusConfig, read_corpus
from pipelines.text_tokenizer import SentencePieceTokenizer, TextTokenizer, load_text_tokenizer
from pipelines.translation_data import (
    EncodingStats,
    augment_glosses,
    collate,
    encode_examples,
    gloss_subword_ids,
    noise_decoder_inputs,
    normalize_glosses,
    token_batches,
)
from pipelines.vocabulary import GlossVocabulary

log = logging.getLogger("train_translation")

LANGUAGE_CODES = {"dgs": "de_DE", "csl": "zh_CN"}


# ---- configuration ------------------------------------------------------------------------------


class DataSection(StrictModel):
    corpus: CorpusConfig
    train_split: str = "train"
    dev_split: str = "dev"
    lowercase_glosses: bool = True
    src_lang: str = "de_DE"  # mBART language code appended to the glosses
    tgt_lang: str = "de_DE"  # mBART language code that starts the text
    level: Literal["word", "char"] | None = None  # scoring level; None: from the corpus name
    max_source_length: int = 128  # glosses
    max_target_length: int = 128  # text sub-words incl. </s>; longer texts are truncated (counted)
    gloss_drop_prob: float = 0.0  # training-time source noise: drop a gloss
    gloss_unk_prob: float = 0.0  # training-time source noise: replace a gloss by <unk>
    target_unk_prob: float = 0.0  # training-time decoder-input noise: replace a previous text token by <unk>
    train_limit: int | None = None  # use only the first N training samples (tests, smoke runs)
    dev_limit: int | None = None


class TokenizerSection(StrictModel):
    """SentencePiece model trained on the training split (from-scratch models only)."""

    vocab_size: int = 4000
    model_type: Literal["unigram", "bpe", "word", "char"] = "unigram"
    include_glosses: bool = True  # also train on the lower-cased gloss sequences
    character_coverage: float = 1.0


class ModelSection(StrictModel):
    pretrained_dir: str | None = None  # local mBART checkpoint (e.g. mbart-large-cc25); None: scratch
    prune_vocabulary: bool = True  # pretrained only: keep the corpus' sub-words
    prune_splits: list[str] = ["train"]  # splits whose texts/glosses are kept (public code: + dev, test)
    gloss_embedding: Literal["table", "subwords"] = "table"
    # from-scratch size (ignored for pretrained models, whose config comes with the checkpoint)
    d_model: int = 256
    encoder_layers: int = 3
    decoder_layers: int = 3
    attention_heads: int = 4
    ffn_dim: int = 1024
    max_position_embeddings: int = 512
    scale_embedding: bool = True
    # regularisation (applied to pretrained configs too)
    dropout: float = 0.3
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0


class OptimSection(StrictModel):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.0  # AdamW, on matrices only
    schedule: Literal["cosine", "inverse_sqrt", "constant"] = "cosine"
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.0  # cosine: floor as a fraction of lr
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    label_smoothing: float = 0.2


class TrainSection(StrictModel):
    epochs: int = 30
    batch_tokens: int = 4096  # padded tokens per batch and worker (max(source, target) x sentences)
    max_sentences: int = 256
    seed: int = 0
    num_threads: int | None = None  # torch threads per worker; None: torch's default
    ema_decay: float = 0.0  # > 0: evaluate and export an exponential moving average of the weights
    max_minutes: float | None = None  # time budget of the training loop: the LR schedule is planned over
    # the epochs that fit (re-estimated every epoch), and training stops before passing it
    dev_num_beams: int = 1  # decoding beams for the per-epoch dev score (1 = greedy)
    dev_length_penalty: float | None = None  # None: decode.length_penalty
    fast_dropout: bool = True  # CPU: dropout masks from 8 random bits per element (models.translation.fast_dropout)


class DecodeSection(StrictModel):
    num_beams: int = 5
    length_penalty: float = 1.0
    max_length: int = 100  # decoder tokens (German 100, Chinese characters 500)
    batch_size: int = 64


class ScalingSection(StrictModel):
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 0
    num_to_keep: int = 2  # checkpoints kept by dev BLEU-4 (the latest is always kept too)


class TranslationConfig(StrictModel):
    name: str
    out_dir: str = "outputs/translation"
    data: DataSection
    tokenizer: TokenizerSection = TokenizerSection()
    model: ModelSection = ModelSection()
    optim: OptimSection = OptimSection()
    train: TrainSection = TrainSection()
    decode: DecodeSection = DecodeSection()
    scaling: ScalingSection = ScalingSection()
    final_eval: bool = True  # decode dev with the best checkpoint and `decode` settings at the end

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def scoring_level(self) -> str:
        from metrics.translation import level_for

        return self.data.level or level_for(self.data.corpus.name)


def absolute_paths(cfg: TranslationConfig) -> TranslationConfig:
    """Relative paths resolved against the current directory (Ray workers may run elsewhere)."""
    cfg = cfg.model_copy(deep=True)
    cfg.out_dir = str(Path(cfg.out_dir).resolve())
    corpus = cfg.data.corpus
    updates: dict[str, Any] = {"files": {k: str(Path(v).resolve()) for k, v in corpus.files.items()}}
    if corpus.root:
        updates["root"] = str(Path(corpus.root).resolve())
    cfg.data.corpus = corpus.model_copy(update=updates)
    if cfg.model.pretrained_dir:
        cfg.model.pretrained_dir = str(Path(cfg.model.pretrained_dir).resolve())
    return cfg


# ---- assets: tokenizer + gloss vocabulary (driver, once per run) --------------------------------


def _load_split(cfg: TranslationConfig, split: str, limit: int | None = None):
    samples = read_corpus(cfg.data.corpus, split)
    samples = samples[:limit] if limit else samples
    missing = [s.name for s in samples if not s.text]
    if missing:
        raise ValueError(f"{cfg.data.corpus.annotation_file(split)}: {len(missing)} sample(s) have no text, e.g. {missing[:3]}")
    return normalize_glosses(samples, cfg.data.lowercase_glosses)


def _asset_spec(cfg: TranslationConfig) -> dict:
    return {
        "data": cfg.data.model_dump(mode="json", include={"corpus", "train_split", "lowercase_glosses", "src_lang", "tgt_lang", "train_limit"}),
        "tokenizer": cfg.tokenizer.model_dump(mode="json"),
        "model": cfg.model.model_dump(mode="json", include={"pretrained_dir", "prune_vocabulary", "prune_splits"}),
    }


def prepare_assets(cfg: TranslationConfig) -> Path:
    """`<run_dir>/assets/` with `tokenizer/`, `gloss_vocab.json` and, for a pretrained model,
    `mbart/` (pruned). Built once; a re-run with different data/tokenizer/model settings is an
    error (use a new run name)."""
    assets = cfg.run_dir / "assets"
    spec = _asset_spec(cfg)
    manifest = assets / "manifest.json"
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old["spec"] != spec:
            raise ValueError(
                f"{cfg.run_dir}: this run was prepared with different data/tokenizer/model settings "
                f"({old['spec']} vs {spec}); choose another name= or delete the run directory"
            )
        return assets
    tmp = cfg.run_dir / "assets.tmp"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    train = _load_split(cfg, cfg.data.train_split, cfg.data.train_limit)
    vocab = GlossVocabulary.from_training_samples(train)
    vocab.save(tmp / "gloss_vocab.json")
    summary: dict[str, Any] = {"train_samples": len(train), "glosses": len(vocab.glosses)}
    if cfg.model.pretrained_dir:
        from models.translation import prune_mbart_checkpoint
        from pipelines.text_tokenizer import MBartTextTokenizer

        if cfg.model.prune_vocabulary:
            texts, glosses = [], []
            for split in cfg.model.prune_splits:
                part = train if split == cfg.data.train_split else _load_split(cfg, split)
                texts += [s.text for s in part]
                glosses += [g for s in part for g in s.glosses]
            summary["pruning"] = prune_mbart_checkpoint(cfg.model.pretrained_dir, tmp / "mbart", texts=texts, glosses=glosses)
            load_text_tokenizer(tmp / "mbart").save(tmp / "tokenizer")
        else:
            MBartTextTokenizer.from_pretrained(cfg.model.pretrained_dir).save(tmp / "tokenizer")
    else:
        texts = [s.text for s in train]
        if cfg.tokenizer.include_glosses:
            texts += [s.gloss_string for s in train]
        tok = SentencePieceTokenizer.train(
            texts,
            tmp / "tokenizer",
            vocab_size=cfg.tokenizer.vocab_size,
            languages=sorted({cfg.data.src_lang, cfg.data.tgt_lang}),
            model_type=cfg.tokenizer.model_type,
            character_coverage=cfg.tokenizer.character_coverage,
        )
        summary["text_vocab"] = len(tok)
    (tmp / "manifest.json").write_text(json.dumps({"spec": spec, "summary": summary}, indent=1, ensure_ascii=False))
    tmp.replace(assets)
    log.info("assets ready in %s: %s", assets, summary)
    return assets


# ---- model construction -------------------------------------------------------------------------


def build_model(cfg: TranslationConfig, assets: Path, tokenizer: TextTokenizer, vocab: GlossVocabulary):
    from models.translation import GlossToText, build_scratch_mbart

    m = cfg.model
    if m.pretrained_dir:
        from transformers import MBartForConditionalGeneration

        source = assets / "mbart" if m.prune_vocabulary else Path(m.pretrained_dir)
        mbart = MBartForConditionalGeneration.from_pretrained(
            str(source),
            local_files_only=True,
            dropout=m.dropout,
            attention_dropout=m.attention_dropout,
            activation_dropout=m.activation_dropout,
            encoder_layerdrop=m.encoder_layerdrop,
            decoder_layerdrop=m.decoder_layerdrop,
        )
    else:
        mbart = build_scratch_mbart(
            len(tokenizer),
            d_model=m.d_model,
            encoder_layers=m.encoder_layers,
            decoder_layers=m.decoder_layers,
            attention_heads=m.attention_heads,
            ffn_dim=m.ffn_dim,
            dropout=m.dropout,
            attention_dropout=m.attention_dropout,
            activation_dropout=m.activation_dropout,
            encoder_layerdrop=m.encoder_layerdrop,
            decoder_layerdrop=m.decoder_layerdrop,
            max_position_embeddings=m.max_position_embeddings,
            scale_embedding=m.scale_embedding,
            seed=cfg.train.seed,
        )
    return GlossToText(
        mbart,
        len(vocab),
        src_lang_id=tokenizer.lang_id(cfg.data.src_lang),
        tgt_lang_id=tokenizer.lang_id(cfg.data.tgt_lang),
        gloss_subwords=gloss_subword_ids(vocab, tokenizer),
        gloss_embedding=m.gloss_embedding,
    )


def lr_factor(step: int, total_steps: int, optim: OptimSection) -> float:
    """Multiplier of `optim.lr` at optimizer step `step` (0-based): linear warm-up, then cosine
    (to `min_lr_ratio`), inverse square root, or constant."""
    warm = max(1, optim.warmup_steps)
    if step < warm:
        return (step + 1) / warm
    if optim.schedule == "constant":
        return 1.0
    if optim.schedule == "inverse_sqrt":
        return math.sqrt(warm / (step + 1))
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, optim: OptimSection) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and "embed_positions" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps)


# ---- decoding + scoring (shared with jobs/evaluate.py) -------------------------------------------


def decode_examples(model, examples, tokenizer: TextTokenizer, *, num_beams: int, length_penalty: float, max_length: int,
                    batch_size: int, device: torch.device) -> list[str]:
    """Translate examples (any order; batched by source length) -> texts in input order."""
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].gloss_ids))
    out: list[str] = [""] * len(examples)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([examples[i] for i in idx], tgt_lang_id=model.tgt_lang_id)
        ids = model.translate(
            batch["gloss_ids"].to(device),
            batch["gloss_lengths"].to(device),
            num_beams=num_beams,
            length_penalty=length_penalty,
            max_length=max_length,
        )
        for i, seq in zip(idx, ids):
            out[i] = tokenizer.decode(seq)
    return out


def score_texts(hyps: list[str], refs: list[str], level: str) -> dict[str, float]:
    """BLEU-1..4 and ROUGE-L (percent) of texts brought to their scoring form."""
    from metrics.translation import translation_scores
    from pipelines.text_tokenizer import scoring_form

    return translation_scores([scoring_form(h, level) for h in hyps], [scoring_form(r, level) for r in refs], level=level)


# ---- the Ray Train worker -----------------------------------------------------------------------


def _gather(obj: Any) -> list[Any]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _all_mean(value: float, weight: float) -> float:
    parts = _gather((value * weight, weight))
    return sum(v for v, _ in parts) / max(1e-9, sum(w for _, w in parts))


def _rng_state() -> dict:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def _write_run_files(run_dir: Path, history: list[dict]) -> None:
    """metrics.jsonl (one line per epoch) and learning_curve.png, written atomically."""
    tmp = run_dir / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
    tmp.replace(run_dir / "metrics.jsonl")
    plot_learning_curve(history, run_dir / "learning_curve.png")


def plot_learning_curve(history: list[dict], path: Path, title: str | None = None) -> None:
    """Dev BLEU-4 (left axis) and train loss (right axis) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(epochs, [h["dev_bleu4"] for h in history], "o-", color="tab:blue", ms=3, label="dev BLEU-4")
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev BLEU-4", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["train_loss"] for h in history], "s-", color="tab:red", ms=2, label="train loss")
    ax2.set_ylabel("train loss (label-smoothed CE)", color="tab:red")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def save_checkpoint(directory: Path, *, cfg: TranslationConfig, assets: Path, eval_model, train_state: dict) -> None:
    """Checkpoint layout: `model/` (weights used for evaluation: the EMA when enabled), `tokenizer/`,
    `gloss_vocab.json`, `config.yaml`, `train_state.pt` (raw weights, optimizer, schedule, RNG,
    epoch, history)."""
    import shutil

    eval_model.save(directory / "model")
    shutil.copytree(assets / "tokenizer", directory / "tokenizer")
    shutil.copyfile(assets / "gloss_vocab.json", directory / "gloss_vocab.json")
    save_config(cfg, directory / "config.yaml")
    torch.save(train_state, directory / "train_state.pt")
    (directory / "metrics.json").write_text(json.dumps(train_state["history"][-1]))


def train_loop_per_worker(loop_config: dict) -> dict:
    import ray.train
    import ray.train.torch

    from models.translation import cpu_fast_dropout

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = TranslationConfig.model_validate(loop_config["config"])
    assets = Path(loop_config["assets"])
    run_dir = cfg.run_dir
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    device = ray.train.torch.get_device()
    level = cfg.scoring_level()

    tokenizer = load_text_tokenizer(assets / "tokenizer")
    vocab = GlossVocabulary.load(assets / "gloss_vocab.json")
    stats = EncodingStats()
    lengths = dict(max_source_length=cfg.data.max_source_length, max_target_length=cfg.data.max_target_length)
    train_ex = encode_examples(_load_split(cfg, cfg.data.train_split, cfg.data.train_limit), vocab, tokenizer, stats=stats, **lengths)
    dev_stats = EncodingStats()
    dev_ex = encode_examples(_load_split(cfg, cfg.data.dev_split, cfg.data.dev_limit), vocab, tokenizer, stats=dev_stats, **lengths)
    if rank == 0:
        for split, st in (("train", stats), ("dev", dev_stats)):
            if st.truncated_targets or st.truncated_sources:
                log.warning("%s: truncated %d text(s) to %d sub-words and %d gloss sequence(s) to %d glosses", split,
                            st.truncated_targets, cfg.data.max_target_length, st.truncated_sources, cfg.data.max_source_length)
        if dev_stats.unknown_gloss_tokens:
            log.warning("dev: %d gloss token(s) (%d types) unseen in training -> <unk>",
                        dev_stats.unknown_gloss_tokens, len(dev_stats.unknown_glosses))

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, assets, tokenizer, vocab)
    model.to(device)
    optimizer = make_optimizer(model, cfg.optim)
    steps_per_epoch = len(token_batches(train_ex, max_tokens=cfg.train.batch_tokens, max_sentences=cfg.train.max_sentences,
                                        shuffle=True, seed=cfg.train.seed, rank=rank, world_size=world))
    # Per-epoch dev decoding stops at the longest training text (+ margin): an early model that
    # never emits </s> would otherwise run to decode.max_length (500 for Chinese) every epoch.
    dev_max_length = min(cfg.decode.max_length, max(len(e.target_ids) for e in train_ex) + 8)
    # The schedule runs over the planned epochs: train.epochs, or, under a time budget, as many as
    # fit (re-planned before each epoch from the measured epoch time), so the LR always anneals.
    plan = {"total_steps": steps_per_epoch * cfg.train.epochs}
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, plan["total_steps"], cfg.optim))
    ema = copy.deepcopy(model).eval() if cfg.train.ema_decay > 0 else None
    if ema is not None:
        ema.requires_grad_(False)

    start_epoch, step, history, elapsed_before = 0, 0, [], 0.0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / "train_state.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        start_epoch, step, history, elapsed_before = state["epoch"], state["step"], state["history"], state["elapsed_s"]
        if rank == 0:
            log.info("resuming after epoch %d (step %d, %.0f s trained)", start_epoch, step, elapsed_before)

    layerdrop = cfg.model.encoder_layerdrop > 0 or cfg.model.decoder_layerdrop > 0
    ddp_model = (
        ray.train.torch.prepare_model(model, move_to_device=False, parallel_strategy_kwargs={"find_unused_parameters": layerdrop})
        if world > 1
        else model
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    ema_params = list(ema.parameters()) if ema is not None else []
    model_params = list(model.parameters())
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
        rng = random.Random(hash((cfg.train.seed, epoch, rank)))
        batches = token_batches(train_ex, max_tokens=cfg.train.batch_tokens, max_sentences=cfg.train.max_sentences,
                                shuffle=True, seed=cfg.train.seed + epoch, rank=rank, world_size=world)
        loss_sum, tokens = 0.0, 0
        for idx in batches:
            exs = [train_ex[i] for i in idx]
            if cfg.data.gloss_drop_prob or cfg.data.gloss_unk_prob:
                exs = [e.__class__(e.name, augment_glosses(e.gloss_ids, rng, drop_prob=cfg.data.gloss_drop_prob,
                                                           unk_prob=cfg.data.gloss_unk_prob), e.target_ids, e.text) for e in exs]
            batch = collate(exs, tgt_lang_id=model.tgt_lang_id)
            if cfg.data.target_unk_prob > 0:
                batch["decoder_input_ids"] = noise_decoder_inputs(batch["decoder_input_ids"], cfg.data.target_unk_prob,
                                                                  pad_id=tokenizer.pad_id, unk_id=tokenizer.unk_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast, cpu_fast_dropout(cfg.train.fast_dropout and device.type == "cpu"):
                loss = ddp_model(batch["gloss_ids"], batch["gloss_lengths"], batch["decoder_input_ids"],
                                 labels=batch["labels"], label_smoothing=cfg.optim.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model_params, cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            if ema is not None:
                d = min(cfg.train.ema_decay, (1 + step) / (10 + step))
                torch._foreach_lerp_(ema_params, [p.detach() for p in model_params], 1 - d)
            n = int(batch["labels"].ne(tokenizer.pad_id).sum())
            loss_sum += loss.item() * n
            tokens += n
        train_s = time.time() - t0
        train_loss = _all_mean(loss_sum / max(1, tokens), tokens)
        total_tokens = sum(_gather(tokens))

        # dev: teacher-forced loss (no smoothing) and decoded scores, each worker its share
        eval_model = ema if ema is not None else model
        eval_model.eval()
        t1 = time.time()
        shard = dev_ex[rank::world]
        dev_nll, dev_tok = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(shard), 128):
                batch = {k: v.to(device) for k, v in collate(shard[start : start + 128], tgt_lang_id=model.tgt_lang_id).items()}
                with autocast:
                    nll = eval_model(batch["gloss_ids"], batch["gloss_lengths"], batch["decoder_input_ids"], labels=batch["labels"])
                n = int(batch["labels"].ne(tokenizer.pad_id).sum())
                dev_nll += nll.item() * n
                dev_tok += n
            with autocast:
                hyps = decode_examples(eval_model, shard, tokenizer, num_beams=cfg.train.dev_num_beams,
                                       length_penalty=cfg.train.dev_length_penalty if cfg.train.dev_length_penalty is not None else cfg.decode.length_penalty,
                                       max_length=dev_max_length, batch_size=cfg.decode.batch_size, device=device)
        dev_loss = _all_mean(dev_nll / max(1, dev_tok), dev_tok)
        pieces = _gather([(rank + world * i, h) for i, h in enumerate(hyps)])
        all_hyps = [h for _, h in sorted(p for part in pieces for p in part)]
        scores = score_texts(all_hyps, [e.text for e in dev_ex], level)
        eval_s = time.time() - t1
        metrics = {
            "epoch": epoch + 1,
            "step": step,
            "lr": optimizer.param_groups[0]["lr"],
            "planned_epochs": planned,
            "train_loss": train_loss,
            "dev_loss": dev_loss,
            **{f"dev_{k}": v for k, v in scores.items()},
            "train_tokens_per_s": total_tokens / max(1e-9, train_s),
            "epoch_train_s": train_s,
            "epoch_eval_s": eval_s,
            "elapsed_s": elapsed_before + time.time() - t_start,
            "wall_time": time.time(),
        }
        history.append(metrics)
        epochs_run.append(epoch + 1)
        state = {
            "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
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
            _write_run_files(run_dir, history)
            with tempfile.TemporaryDirectory(prefix="g2t_ckpt_") as tmp:
                save_checkpoint(Path(tmp), cfg=cfg, assets=assets, eval_model=eval_model, train_state=state)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics, checkpoint=None)
    return {"epochs_run": epochs_run}


# ---- driver -------------------------------------------------------------------------------------


def run(cfg: TranslationConfig) -> dict:
    """Prepare assets, train (or resume) on Ray Train, and evaluate the best checkpoint on dev."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from jobs.ray_cluster import init_ray

    cfg = absolute_paths(cfg)
    t0 = time.time()
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    assets = prepare_assets(cfg)
    init_ray(job_priority=True)
    s = cfg.scaling
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg.model_dump(mode="json"), "assets": str(assets)},
        scaling_config=ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker={"CPU": s.cpus_per_worker}),
        run_config=RunConfig(
            name=cfg.name,
            storage_path=cfg.out_dir,
            failure_config=FailureConfig(max_failures=s.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=s.num_to_keep, checkpoint_score_attribute="dev_bleu4", checkpoint_score_order="max"
            ),
        ),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    best = result.get_best_checkpoint("dev_bleu4", "max")
    if best is None:
        raise RuntimeError(f"{run_dir}: training reported no checkpoint")
    best_metrics = json.loads((Path(best.path) / "metrics.json").read_text())
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "best_checkpoint": best.path,
        "best_epoch": best_metrics["epoch"],
        "best_dev": {k: best_metrics[k] for k in ("dev_bleu1", "dev_bleu2", "dev_bleu3", "dev_bleu4", "dev_rouge")},
        "epochs_run": (result.return_value or {}).get("epochs_run"),
        "train_s": time.time() - t0,
    }
    (run_dir / "best_checkpoint.json").write_text(json.dumps(summary, indent=1))
    if cfg.final_eval:
        from jobs.evaluate import evaluate_g2t

        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        final = evaluate_g2t(Path(best.path), split=cfg.data.dev_split, out_dir=run_dir / f"eval_{cfg.data.dev_split}", limit=cfg.data.dev_limit)
        summary["final_dev"] = final["scores"]
        summary["final_decode"] = final["decode"]
    summary["wall_s"] = time.time() - t0
    (run_dir / "best_checkpoint.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = job_argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(TranslationConfig, args.config, args.overrides)
    summary = run(cfg)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
