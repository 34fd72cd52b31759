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
import logging
import random
import time
from pathlib import Path
from typing import Any, Literal

import torch

from common.config import StrictModel, save_config
from common.files import atomic_directory, atomic_write_json
from pipelines.corpora import CorpusConfig
from pipelines.text_tokenizer import SentencePieceTokenizer, TextTokenizer, load_text_tokenizer
from pipelines.translation_data import (
    EncodingStats,
    augment_glosses,
    collate,
    cover_unseen_glosses,
    encode_examples,
    gloss_subword_ids,
    noise_decoder_inputs,
    read_text_samples,
    text_spellings,
    token_batches,
)
from pipelines.vocabulary import GlossVocabulary
from training import state as train_state
from training.checkpoint import save_gloss2text, write_checkpoint
from training.cli import LOG_FORMAT, recipe_main
from training.distributed import all_mean, autocast, gather, rank_and_world, worker_context, wrap_ddp
from training.evaluation import decode_examples, evaluate_gloss2text, score_texts
from training.ray_cluster import storage_path
from training.ray_train import ScalingSection, fit, report_epoch, write_summary
from training.run_log import CurveSpec, RunLog
from training.schedule import EpochBudget, make_lr_scheduler

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
    # a dev/test gloss never seen in training: "spelling" embeds it as the mean of its sub-words'
    # embeddings (pipelines.translation_data.cover_unseen_glosses), "unk" reads it as <unk>
    unseen_glosses: Literal["spelling", "unk"] = "spelling"
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
    # the sub-words a gloss is embedded from ("subwords"), or its table row starts from ("table"): those of
    # its spelling "as_written", or of the training texts' ("texts": KOENNEN -> können, translation_data.text_spellings)
    gloss_spelling: Literal["as_written", "texts"] = "as_written"
    freeze_embeddings: bool = False  # keep the gloss and text embeddings (and the tied output layer) fixed
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
    # R-Drop: weight of the symmetric KL between two dropout passes of each batch (0 = off; each step
    # then costs two forward/backward passes). The paper's alpha 5 (summed losses) is 2.5 here (means).
    rdrop_alpha: float = 0.0


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
    cfg.out_dir = storage_path(cfg.out_dir)
    corpus = cfg.data.corpus
    updates: dict[str, Any] = {"files": {k: str(Path(v).resolve()) for k, v in corpus.files.items()}}
    if corpus.root:
        updates["root"] = str(Path(corpus.root).resolve())
    cfg.data.corpus = corpus.model_copy(update=updates)
    if cfg.model.pretrained_dir:
        cfg.model.pretrained_dir = str(Path(cfg.model.pretrained_dir).resolve())
    return cfg


# ---- assets: tokenizer + gloss vocabulary (driver, once per run) --------------------------------


def load_split(cfg: TranslationConfig, split: str, limit: int | None = None):
    """A split's samples, glosses normalised as the model reads them."""
    return read_text_samples(cfg.data.corpus, split, lowercase_glosses=cfg.data.lowercase_glosses, limit=limit)


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
    import json

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
    with atomic_directory(assets) as tmp:
        train = load_split(cfg, cfg.data.train_split, cfg.data.train_limit)
        vocab = GlossVocabulary.from_training_samples(train)
        vocab.save(tmp / "gloss_vocab.json")
        summary: dict[str, Any] = {"train_samples": len(train), "glosses": len(vocab.glosses)}
        if cfg.model.pretrained_dir:
            summary["pruning"] = prepare_pretrained_tokenizer(cfg, train, tmp)
        else:
            texts = [s.text for s in train] + ([s.gloss_string for s in train] if cfg.tokenizer.include_glosses else [])
            tok = SentencePieceTokenizer.train(
                texts, tmp / "tokenizer", vocab_size=cfg.tokenizer.vocab_size, languages=sorted({cfg.data.src_lang, cfg.data.tgt_lang}),
                model_type=cfg.tokenizer.model_type, character_coverage=cfg.tokenizer.character_coverage,
            )
            summary["text_vocab"] = len(tok)
        atomic_write_json(tmp / "manifest.json", {"spec": spec, "summary": summary})
    log.info("assets ready in %s: %s", assets, summary)
    return assets


def prepare_pretrained_tokenizer(cfg: TranslationConfig, train, out: Path) -> dict | None:
    """`out/mbart/` (the pretrained mBART pruned to the sub-words of `model.prune_splits`) and
    `out/tokenizer/`; returns the pruning summary (None without pruning)."""
    from models.translation import prune_mbart_checkpoint
    from pipelines.text_tokenizer import MBartTextTokenizer

    if not cfg.model.prune_vocabulary:
        MBartTextTokenizer.from_pretrained(cfg.model.pretrained_dir).save(out / "tokenizer")
        return None
    texts, glosses = [], []
    for split in cfg.model.prune_splits:
        part = train if split == cfg.data.train_split else load_split(cfg, split)
        texts += [s.text for s in part]
        glosses += [g for s in part for g in s.glosses]
    summary = prune_mbart_checkpoint(cfg.model.pretrained_dir, out / "mbart", texts=texts, glosses=glosses)
    load_text_tokenizer(out / "mbart").save(out / "tokenizer")
    return summary


# ---- model and optimizer ------------------------------------------------------------------------


def gloss_spellings(cfg: TranslationConfig, vocab: GlossVocabulary, train_samples) -> dict[str, str] | None:
    """gloss -> its training texts' spelling where that differs (`model.gloss_spelling: texts`), else None."""
    if cfg.model.gloss_spelling != "texts":
        return None
    return text_spellings(vocab.glosses, (s.text for s in train_samples))


def build_model(cfg: TranslationConfig, assets: Path, tokenizer: TextTokenizer, vocab: GlossVocabulary,
                spellings: dict[str, str] | None = None):
    """GlossToText over a pretrained (pruned) mBART from `assets`, or a from-scratch one; `spellings`
    (gloss -> the texts' spelling) choose the sub-words glosses are embedded from."""
    from models.translation import GlossToText, build_scratch_mbart

    m = cfg.model
    regularisation = dict(dropout=m.dropout, attention_dropout=m.attention_dropout, activation_dropout=m.activation_dropout,
                          encoder_layerdrop=m.encoder_layerdrop, decoder_layerdrop=m.decoder_layerdrop)
    if m.pretrained_dir:
        from transformers import MBartForConditionalGeneration

        source = assets / "mbart" if m.prune_vocabulary else Path(m.pretrained_dir)
        mbart = MBartForConditionalGeneration.from_pretrained(str(source), local_files_only=True, **regularisation)
    else:
        mbart = build_scratch_mbart(len(tokenizer), d_model=m.d_model, encoder_layers=m.encoder_layers,
                                    decoder_layers=m.decoder_layers, attention_heads=m.attention_heads, ffn_dim=m.ffn_dim,
                                    max_position_embeddings=m.max_position_embeddings, scale_embedding=m.scale_embedding,
                                    seed=cfg.train.seed, **regularisation)
    model = GlossToText(mbart, len(vocab), src_lang_id=tokenizer.lang_id(cfg.data.src_lang),
                        tgt_lang_id=tokenizer.lang_id(cfg.data.tgt_lang), gloss_subwords=gloss_subword_ids(vocab, tokenizer, spellings),
                        gloss_embedding=m.gloss_embedding)
    if m.freeze_embeddings:
        model.freeze_embeddings()
    return model


def make_optimizer(model: torch.nn.Module, optim: OptimSection) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not on biases, norms or position embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and "embed_positions" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps)


# ---- the training epoch ---------------------------------------------------------------------------


def train_epoch(model, ddp_model, examples, cfg: TranslationConfig, epoch: int, optimizer, scheduler,
                progress: train_state.Progress, ema, tokenizer: TextTokenizer, device: torch.device) -> tuple[float, int]:
    """One epoch over this worker's share of the token-bucketed batches, with the configured source
    and decoder-input noise; updates the EMA after each step. Returns (loss x tokens, tokens)."""
    from models.translation import cpu_fast_dropout

    rank, world = rank_and_world()
    rng = random.Random(hash((cfg.train.seed, epoch, rank)))
    batches = token_batches(examples, max_tokens=cfg.train.batch_tokens, max_sentences=cfg.train.max_sentences,
                            shuffle=True, seed=cfg.train.seed + epoch, rank=rank, world_size=world)
    model_params = list(model.parameters())
    ema_params = list(ema.parameters()) if ema is not None else []
    loss_sum, tokens = 0.0, 0
    for idx in batches:
        exs = [examples[i] for i in idx]
        if cfg.data.gloss_drop_prob or cfg.data.gloss_unk_prob:
            exs = [e.__class__(e.name, augment_glosses(e.gloss_ids, rng, drop_prob=cfg.data.gloss_drop_prob,
                                                       unk_prob=cfg.data.gloss_unk_prob), e.target_ids, e.text) for e in exs]
        batch = collate(exs, tgt_lang_id=model.tgt_lang_id)
        if cfg.data.target_unk_prob > 0:
            batch["decoder_input_ids"] = noise_decoder_inputs(batch["decoder_input_ids"], cfg.data.target_unk_prob,
                                                              pad_id=tokenizer.pad_id, unk_id=tokenizer.unk_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device), cpu_fast_dropout(cfg.train.fast_dropout and device.type == "cpu"):
            loss = ddp_model(batch["gloss_ids"], batch["gloss_lengths"], batch["decoder_input_ids"],
                             labels=batch["labels"], label_smoothing=cfg.optim.label_smoothing,
                             rdrop_alpha=cfg.optim.rdrop_alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model_params, cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        progress.step += 1
        if ema is not None:
            d = min(cfg.train.ema_decay, (1 + progress.step) / (10 + progress.step))
            torch._foreach_lerp_(ema_params, [p.detach() for p in model_params], 1 - d)
        n = int(batch["labels"].ne(tokenizer.pad_id).sum())
        loss_sum += loss.item() * n
        tokens += n
    return loss_sum, tokens


# ---- the dev evaluation ---------------------------------------------------------------------------


def evaluate_dev(model, examples, cfg: TranslationConfig, tokenizer: TextTokenizer, device: torch.device,
                 max_length: int) -> dict:
    """Teacher-forced dev loss (no smoothing) and decoded dev scores; each worker its share."""
    rank, world = rank_and_world()
    shard = examples[rank::world]
    nll, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(shard), 128):
            batch = {k: v.to(device) for k, v in collate(shard[start : start + 128], tgt_lang_id=model.tgt_lang_id).items()}
            with autocast(device):
                loss = model(batch["gloss_ids"], batch["gloss_lengths"], batch["decoder_input_ids"], labels=batch["labels"])
            n = int(batch["labels"].ne(tokenizer.pad_id).sum())
            nll += loss.item() * n
            tokens += n
        length_penalty = cfg.train.dev_length_penalty if cfg.train.dev_length_penalty is not None else cfg.decode.length_penalty
        with autocast(device):
            hyps = decode_examples(model, shard, tokenizer, num_beams=cfg.train.dev_num_beams, length_penalty=length_penalty,
                                   max_length=max_length, batch_size=cfg.decode.batch_size, device=device)
    dev_loss = all_mean(nll / max(1, tokens), tokens)
    pieces = gather([(rank + world * i, h) for i, h in enumerate(hyps)])
    all_hyps = [h for _, h in sorted(p for part in pieces for p in part)]
    scores = score_texts(all_hyps, [e.text for e in examples], cfg.scoring_level())
    return {"dev_loss": dev_loss, **{f"dev_{k}": v for k, v in scores.items()}}


# ---- the Ray Train worker -----------------------------------------------------------------------


def encode_split(cfg: TranslationConfig, samples: list, split: str, vocab, tokenizer, rank: int) -> list:
    """A split's encoded examples; rank 0 warns about truncation and glosses unseen in training."""
    stats = EncodingStats()
    examples = encode_examples(samples, vocab, tokenizer, stats=stats,
                               max_source_length=cfg.data.max_source_length, max_target_length=cfg.data.max_target_length)
    if rank == 0 and (stats.truncated_targets or stats.truncated_sources):
        log.warning("%s: truncated %d text(s) to %d sub-words and %d gloss sequence(s) to %d glosses", split,
                    stats.truncated_targets, cfg.data.max_target_length, stats.truncated_sources, cfg.data.max_source_length)
    if rank == 0 and split != cfg.data.train_split and stats.unknown_gloss_tokens:
        log.warning("%s: %d gloss token(s) (%d types) unseen in training -> <unk>", split,
                    stats.unknown_gloss_tokens, len(stats.unknown_glosses))
    return examples


def train_loop_per_worker(loop_config: dict) -> dict:
    import ray.train

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    cfg = TranslationConfig.model_validate(loop_config["config"])
    assets = Path(loop_config["assets"])
    rank, world, device = worker_context()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    tokenizer = load_text_tokenizer(assets / "tokenizer")
    vocab = GlossVocabulary.load(assets / "gloss_vocab.json")
    train_samples = load_split(cfg, cfg.data.train_split, cfg.data.train_limit)
    train_ex = encode_split(cfg, train_samples, cfg.data.train_split, vocab, tokenizer, rank)
    spellings = gloss_spellings(cfg, vocab, train_samples)
    if rank == 0 and spellings:
        log.info("%d gloss type(s) embedded from the training texts' spelling, e.g. %s", len(spellings),
                 dict(list(spellings.items())[:5]))
    dev_samples = load_split(cfg, cfg.data.dev_split, cfg.data.dev_limit)
    dev_vocab, unseen = vocab, []
    if cfg.data.unseen_glosses == "spelling":
        dev_vocab, unseen = cover_unseen_glosses(dev_samples, vocab, tokenizer)
        if rank == 0 and unseen:
            log.info("%s: %d gloss type(s) unseen in training, embedded from their spelling", cfg.data.dev_split, len(unseen))
    dev_ex = encode_split(cfg, dev_samples, cfg.data.dev_split, dev_vocab, tokenizer, rank)

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, assets, tokenizer, vocab, spellings).to(device)
    model.set_unseen_glosses(unseen)
    optimizer = make_optimizer(model, cfg.optim)
    steps_per_epoch = len(token_batches(train_ex, max_tokens=cfg.train.batch_tokens, max_sentences=cfg.train.max_sentences,
                                        shuffle=True, seed=cfg.train.seed, rank=rank, world_size=world))
    # Per-epoch dev decoding stops at the longest training text (+ margin): an early model that
    # never emits </s> would otherwise run to decode.max_length (500 for Chinese) every epoch.
    dev_max_length = min(cfg.decode.max_length, max(len(e.target_ids) for e in train_ex) + 8)
    budget = EpochBudget(cfg.train.epochs, cfg.train.max_minutes, steps_per_epoch)
    o = cfg.optim
    scheduler = make_lr_scheduler(optimizer, budget.total_steps, warmup_steps=o.warmup_steps, schedule=o.schedule,
                                  min_lr_ratio=o.min_lr_ratio)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.train.ema_decay > 0 else None
    progress, state = train_state.resume(ray.train.get_checkpoint(), model=model, optimizer=optimizer, scheduler=scheduler,
                                         map_location=device, rank=rank)
    if ema is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])

    layerdrop = cfg.model.encoder_layerdrop > 0 or cfg.model.decoder_layerdrop > 0
    ddp_model = wrap_ddp(model, world, find_unused_parameters=layerdrop)
    run_log = RunLog(cfg.run_dir, CurveSpec((("dev_bleu4", "dev BLEU-4"),), "dev BLEU-4", (("train_loss", "train loss"),),
                                            "train loss (label-smoothed CE)"))
    text = cfg.data.model_dump(include={"lowercase_glosses", "max_source_length", "max_target_length", "src_lang", "tgt_lang",
                                        "unseen_glosses"})
    first_epoch = progress.epoch
    for epoch in budget.epochs(progress):
        t0 = time.time()
        ddp_model.train()
        loss_sum, tokens = train_epoch(model, ddp_model, train_ex, cfg, epoch, optimizer, scheduler, progress, ema, tokenizer, device)
        train_s = time.time() - t0
        train_loss, total_tokens = all_mean(loss_sum / max(1, tokens), tokens), sum(gather(tokens))
        eval_model = ema if ema is not None else model
        t1 = time.time()
        dev = evaluate_dev(eval_model, dev_ex, cfg, tokenizer, device, dev_max_length)
        metrics = {"epoch": epoch + 1, "step": progress.step, "lr": optimizer.param_groups[0]["lr"], "planned_epochs": budget.planned,
                   "train_loss": train_loss, **dev, "train_tokens_per_s": total_tokens / max(1e-9, train_s),
                   "epoch_train_s": train_s, "epoch_eval_s": time.time() - t1, "elapsed_s": progress.elapsed_s(),
                   "wall_time": time.time()}
        progress.end_epoch(metrics)
        if rank == 0:
            run_log.write(progress.history)
        state = train_state.capture(progress, optimizer=optimizer, scheduler=scheduler,
                                    model_weights=model.state_dict() if ema is not None else None,
                                    ema=ema.state_dict() if ema is not None else None) if rank == 0 else None
        report_epoch(metrics, rank=rank, save=lambda d: write_checkpoint(
            d, save_model=lambda m: save_gloss2text(m, model=eval_model, tokenizer_dir=assets / "tokenizer", vocab=vocab, text=text),
            train_state=state, run_config=cfg, metrics=metrics))
    run_log.close()
    return {"epochs_run": [h["epoch"] for h in progress.history if h["epoch"] > first_epoch]}


# ---- driver -------------------------------------------------------------------------------------


def run(cfg: TranslationConfig) -> dict:
    """Prepare assets, train (or resume) on Ray Train, and evaluate the best checkpoint on dev.
    Returns the summary (also `<run_dir>/best_checkpoint.json`)."""
    cfg = absolute_paths(cfg)
    t0 = time.time()
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg.run_dir / "config.yaml")
    assets = prepare_assets(cfg)
    result = fit(train_loop_per_worker, {"config": cfg.model_dump(mode="json"), "assets": str(assets)},
                 name=cfg.name, storage_path=cfg.out_dir, scaling=cfg.scaling, metric="dev_bleu4", mode="max")
    best = {k: result.best_metrics[k] for k in ("dev_bleu1", "dev_bleu2", "dev_bleu3", "dev_bleu4", "dev_rouge")}
    summary: dict[str, Any] = {**result.summary(cfg.run_dir, t0), "best_dev": best}
    write_summary(cfg.run_dir, summary)
    if cfg.final_eval:
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        final = evaluate_gloss2text(result.best_checkpoint, split=cfg.data.dev_split, out_dir=cfg.run_dir / f"eval_{cfg.data.dev_split}",
                                    limit=cfg.data.dev_limit)
        summary.update(final_dev=final["scores"], final_decode=final["decode"])
    return write_summary(cfg.run_dir, {**summary, "wall_s": time.time() - t0})


def main(argv: list[str] | None = None) -> dict:
    return recipe_main(TranslationConfig, run, __doc__.splitlines()[0], argv,
                       report=("best_epoch", "best_dev.dev_bleu4", "final_dev.bleu4", "final_dev.rouge", "wall_s"))


if __name__ == "__main__":
    main()
