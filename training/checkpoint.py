"""The one checkpoint contract of every stage, and a loader per model family.

    <checkpoint>/
      model/              the model, usable on its own
        config.json       {"family", "format", "model": its config, ...what using it needs}
        weights.pt        the state dict (an EMA's, where the run exports one)
        gloss_vocab.json  the gloss vocabulary (sign2gloss, gloss2text, sign2text; islr keeps one
                          class list per language in config.json)
        tokenizer/        gloss2text, sign2text: the SentencePiece model, or the pruned mBART's
                          tokenizer with its id map
      train_state.pt      optimizer, scheduler, RNGs, progress (training/state.py)
      config.yaml         the resolved run config
      metrics.json        the metrics of the epoch that wrote it

`load_sign2gloss(path)`, `load_gloss2text(path)`, `load_sign2text(path)` and `load_islr(path)` return
a ready model with its config and assets; `load_checkpoint(path)` picks the loader from `model/config.json`. A path may be a run
directory: `resolve_checkpoint` turns it into its best checkpoint. Checkpoints of the layout
before this contract (recognition: `gloss_vocab.json` beside `model/`; translation:
`model/model.pt` + `translation_model.json` + `mbart_config.json`) still load.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from pydantic import BaseModel

from common.config import save_config
from common.files import atomic_write_json
from pipelines.vocabulary import GlossVocabulary

log = logging.getLogger(__name__)

FORMAT = 1
MODEL_DIR, CONFIG_FILE, WEIGHTS_FILE = "model", "config.json", "weights.pt"
VOCAB_FILE, TOKENIZER_DIR = "gloss_vocab.json", "tokenizer"
RUN_CONFIG_FILE, METRICS_FILE, BEST_FILE = "config.yaml", "metrics.json", "best_checkpoint.json"
FAMILIES = ("sign2gloss", "gloss2text", "sign2text", "islr")


class CheckpointError(ValueError):
    """A path is not a checkpoint of the kind asked for; the message says what is there."""


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory (with `model/`), or a run directory -> its best checkpoint."""
    path = Path(path)
    if (path / MODEL_DIR).is_dir():
        return path
    best = path / BEST_FILE
    if best.exists():
        return Path(json.loads(best.read_text())["best_checkpoint"])
    raise FileNotFoundError(f"{path}: neither a checkpoint (no model/) nor a run directory (no {BEST_FILE})")


def write_checkpoint(directory: str | Path, *, save_model: Callable[[Path], None], train_state: dict,
                     run_config: BaseModel, metrics: dict) -> None:
    """Fill `directory` (a fresh temporary folder the caller hands to Ray) with the contract's files;
    `save_model(model_dir)` writes `model/` (one of the `save_*` functions below)."""
    directory = Path(directory)
    save_model(directory / MODEL_DIR)
    torch.save(train_state, directory / "train_state.pt")
    save_config(run_config, directory / RUN_CONFIG_FILE)
    atomic_write_json(directory / METRICS_FILE, metrics, indent=None)


def model_family(path: str | Path) -> str:
    """The family of a checkpoint (or run directory): "sign2gloss", "gloss2text" or "islr"."""
    ckpt = resolve_checkpoint(path)
    config = ckpt / MODEL_DIR / CONFIG_FILE
    if config.exists():
        return json.loads(config.read_text()).get("family", "sign2gloss")  # old recognition: a bare model config
    if (ckpt / MODEL_DIR / "translation_model.json").exists():
        return "gloss2text"
    raise CheckpointError(f"{ckpt}: model/ has neither {CONFIG_FILE} nor translation_model.json; not a signbridge checkpoint")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> "Sign2GlossCheckpoint | Gloss2TextCheckpoint | Sign2TextCheckpoint | ISLRCheckpoint":
    """Any family's checkpoint (or a run directory's best one)."""
    family = model_family(path)
    loaders = {"sign2gloss": load_sign2gloss, "gloss2text": load_gloss2text, "sign2text": load_sign2text, "islr": load_islr}
    if family not in loaders:
        raise CheckpointError(f"{path}: unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    return loaders[family](path, map_location)


def _read(ckpt: Path, family: str) -> dict:
    """`model/config.json` of a checkpoint of `family`, or {} for the old layout of that family."""
    found = model_family(ckpt)
    if found != family:
        raise CheckpointError(f"{ckpt}: a {found} checkpoint, not a {family} one")
    path = ckpt / MODEL_DIR / CONFIG_FILE
    config = json.loads(path.read_text()) if path.exists() else {}
    if "family" not in config:
        log.warning("%s: checkpoint in the layout before the checkpoint contract; loading it as such "
                    "(retrain, or re-save with training.checkpoint.save_%s, to upgrade)", ckpt, family)
        return {}
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {config.get('format')!r}, this code reads format {FORMAT}")
    return config


def _run_context(ckpt: Path) -> tuple[dict, dict]:
    """(run config as a plain dict, the epoch's metrics) of a checkpoint; {} where absent."""
    run_config = yaml.safe_load((ckpt / RUN_CONFIG_FILE).read_text()) if (ckpt / RUN_CONFIG_FILE).exists() else {}
    metrics = json.loads((ckpt / METRICS_FILE).read_text()) if (ckpt / METRICS_FILE).exists() else {}
    return run_config or {}, metrics


# ---- Sign2Gloss: TwoStreamSLR / SingleStream + gloss vocabulary + the input settings ---------------


@dataclass
class Sign2GlossCheckpoint:
    """A loaded recognition checkpoint. `collate` and `frame_stride` are the input settings the
    model was trained with (evaluation clips are made the same way); `keypoint_backend` the
    back-end of its training shards' keypoints."""

    path: Path
    model: Any  # models.two_stream.TwoStreamSLR, in eval mode
    vocab: GlossVocabulary
    collate: Any  # pipelines.video_collate.VideoCollateConfig
    frame_stride: int = 1
    keypoint_backend: str | None = None
    decode_classes: int | None = None  # decoding emits the first classes only (mixed training: blank + primary glosses)
    metrics: dict = field(default_factory=dict)
    run_config: dict = field(default_factory=dict)

    @property
    def uses_keypoints(self) -> bool:
        return "keypoint" in self.model.config.streams


def save_sign2gloss(directory: str | Path, *, model, vocab: GlossVocabulary, collate, frame_stride: int = 1,
                    keypoint_backend: str | None = None, decode_classes: int | None = None) -> None:
    """Write `model/` of a recognition checkpoint (`directory` is that folder). decode_classes: how
    many leading vocabulary ids decoding may emit (None: all)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    vocab.save(directory / VOCAB_FILE)
    atomic_write_json(directory / CONFIG_FILE, {
        "family": "sign2gloss", "format": FORMAT, "model": model.config.model_dump(mode="json"),
        "inputs": {"collate": collate.model_dump(mode="json"), "frame_stride": frame_stride, "keypoint_backend": keypoint_backend,
                   "decode_classes": decode_classes},
    })


def load_sign2gloss(path: str | Path, map_location: str | torch.device = "cpu") -> Sign2GlossCheckpoint:
    """A recognition checkpoint (or a run directory's best one) -> model (eval mode), vocabulary,
    input settings."""
    from models.two_stream import TwoStreamConfig, TwoStreamSLR
    from pipelines.video_collate import VideoCollateConfig

    ckpt = resolve_checkpoint(path)
    config = _read(ckpt, "sign2gloss")
    run_config, metrics = _run_context(ckpt)
    model_dir = ckpt / MODEL_DIR
    if config:
        model_config, inputs, vocab_path = config["model"], config["inputs"], model_dir / VOCAB_FILE
    else:  # old layout: bare model config, vocabulary and input settings beside model/
        data = run_config.get("data", {})
        model_config = json.loads((model_dir / CONFIG_FILE).read_text())
        inputs = {"collate": data.get("collate", {}), "frame_stride": data.get("frame_stride", 1), "keypoint_backend": None}
        vocab_path = ckpt / VOCAB_FILE
    model = TwoStreamSLR(TwoStreamConfig.model_validate(model_config))
    model.load_state_dict(torch.load(model_dir / WEIGHTS_FILE, map_location=map_location, weights_only=True))
    return Sign2GlossCheckpoint(
        path=ckpt, model=model.eval(), vocab=GlossVocabulary.load(vocab_path),
        collate=VideoCollateConfig.model_validate(inputs["collate"]), frame_stride=inputs["frame_stride"],
        keypoint_backend=inputs.get("keypoint_backend"), decode_classes=inputs.get("decode_classes"), metrics=metrics,
        run_config=run_config,
    )


# ---- Gloss2Text: GlossToText (mBART) + gloss vocabulary + text tokenizer + text settings -----------


@dataclass
class Gloss2TextCheckpoint:
    """A loaded translation checkpoint. `text` holds the settings the model reads glosses and
    writes text with: lowercase_glosses, max_source_length, max_target_length, src_lang, tgt_lang."""

    path: Path
    model: Any  # models.translation.GlossToText, in eval mode
    tokenizer: Any  # pipelines.text_tokenizer.TextTokenizer
    vocab: GlossVocabulary
    text: dict
    metrics: dict = field(default_factory=dict)
    run_config: dict = field(default_factory=dict)


TEXT_SETTINGS = ("lowercase_glosses", "max_source_length", "max_target_length", "src_lang", "tgt_lang")
OPTIONAL_TEXT_SETTINGS = ("unseen_glosses",)  # absent from older checkpoints: readers take the default


def save_gloss2text(directory: str | Path, *, model, tokenizer_dir: str | Path, vocab: GlossVocabulary, text: dict) -> None:
    """Write `model/` of a translation checkpoint: weights, config, vocabulary, and a copy of the
    tokenizer folder (SentencePiece model or pruned-mBART tokenizer with its id map)."""
    _save_text_model(directory, "gloss2text", model=model, vocab=vocab, tokenizer_dir=tokenizer_dir, text=text)


def _save_text_model(directory: str | Path, family: str, *, model, vocab: GlossVocabulary, tokenizer_dir: str | Path,
                     text: dict, **config) -> None:
    """`model/` of a family that writes text: weights, gloss vocabulary, a copy of the text tokenizer,
    and config.json (family, format, the model's config, `config`'s entries, the text settings)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    missing = [k for k in TEXT_SETTINGS if k not in text]
    if missing:
        raise ValueError(f"save_{family}: text settings {missing} missing")
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    vocab.save(directory / VOCAB_FILE)
    shutil.copytree(tokenizer_dir, directory / TOKENIZER_DIR)
    atomic_write_json(directory / CONFIG_FILE, {"family": family, "format": FORMAT, "model": model.config_dict(), **config,
                                                "text": {k: text[k] for k in (*TEXT_SETTINGS, *OPTIONAL_TEXT_SETTINGS) if k in text}})


def load_gloss2text(path: str | Path, map_location: str | torch.device = "cpu") -> Gloss2TextCheckpoint:
    """A translation checkpoint (or a run directory's best one) -> model (eval mode), tokenizer,
    vocabulary, text settings."""
    from models.translation import GlossToText
    from pipelines.text_tokenizer import load_text_tokenizer

    ckpt = resolve_checkpoint(path)
    config = _read(ckpt, "gloss2text")
    run_config, metrics = _run_context(ckpt)
    model_dir = ckpt / MODEL_DIR
    if config:
        model_config, text, assets, weights = config["model"], config["text"], model_dir, model_dir / WEIGHTS_FILE
    else:  # old layout: mBART config + wrapper spec in model/, tokenizer and vocabulary beside it
        model_config = {"mbart": json.loads((model_dir / "mbart_config.json").read_text()),
                        "wrapper": json.loads((model_dir / "translation_model.json").read_text())}
        data = run_config.get("data", {})
        text = {"lowercase_glosses": data.get("lowercase_glosses", True), "max_source_length": data.get("max_source_length", 128),
                "max_target_length": data.get("max_target_length", 128), "src_lang": data.get("src_lang", "de_DE"),
                "tgt_lang": data.get("tgt_lang", "de_DE")}
        assets, weights = ckpt, model_dir / "model.pt"
    model = GlossToText.from_config_dict(model_config)
    model.load_state_dict(torch.load(weights, map_location=map_location, weights_only=True))
    return Gloss2TextCheckpoint(
        path=ckpt, model=model.eval(), tokenizer=load_text_tokenizer(assets / TOKENIZER_DIR),
        vocab=GlossVocabulary.load(assets / VOCAB_FILE), text=text, metrics=metrics, run_config=run_config,
    )



def load_gloss2text_ensemble(paths: list[str | Path], map_location: str | torch.device = "cpu") -> Gloss2TextCheckpoint:
    """Several translation checkpoints (or run directories) trained on the same gloss vocabulary,
    text tokenizer and text settings (e.g. seeds of one recipe) -> one checkpoint whose model is
    their ensemble (`models.translation_ensemble.GlossToTextEnsemble`); path, metrics and run config
    are the first member's. Raises ValueError naming the member that differs and how."""
    from models.translation_ensemble import GlossToTextEnsemble

    if not paths:
        raise ValueError("an ensemble needs at least one checkpoint")
    members = [load_gloss2text(p, map_location=map_location) for p in paths]
    first = members[0]
    pieces = [first.tokenizer.piece(i) for i in range(len(first.tokenizer))]
    for ck in members[1:]:
        if ck.vocab.glosses != first.vocab.glosses:
            raise ValueError(f"{ck.path}: its gloss vocabulary ({len(ck.vocab.glosses)} glosses) differs from {first.path}'s "
                             f"({len(first.vocab.glosses)}); ensemble members must share it")
        if [ck.tokenizer.piece(i) for i in range(len(ck.tokenizer))] != pieces:
            raise ValueError(f"{ck.path}: its text tokenizer differs from {first.path}'s; ensemble members must share it")
        differing = sorted(k for k in {*ck.text, *first.text} if ck.text.get(k) != first.text.get(k))
        if differing:
            raise ValueError(f"{ck.path}: text settings {differing} differ from {first.path}'s")
    return replace(first, model=GlossToTextEnsemble([ck.model for ck in members]).eval())

# ---- Sign2Text: recognizer + V-L mapper + mBART, gloss vocabulary, text tokenizer, input and text settings


@dataclass
class Sign2TextCheckpoint:
    """A loaded Sign2Text checkpoint: everything to go from frames (and keypoints) to glosses and
    text. `vocab` is the recognizer's gloss vocabulary (CTC classes), `collate` / `frame_stride` /
    `keypoint_backend` its input settings, `text` the Gloss2Text settings (src_lang, tgt_lang, ...)."""

    path: Path
    model: Any  # models.sign2text.SignToText, in eval mode
    vocab: GlossVocabulary
    tokenizer: Any  # pipelines.text_tokenizer.TextTokenizer
    collate: Any  # pipelines.video_collate.VideoCollateConfig
    text: dict
    frame_stride: int = 1
    keypoint_backend: str | None = None
    metrics: dict = field(default_factory=dict)
    run_config: dict = field(default_factory=dict)

    @property
    def uses_keypoints(self) -> bool:
        return "keypoint" in self.model.recognizer.config.streams


def save_sign2text(directory: str | Path, *, model, vocab: GlossVocabulary, tokenizer_dir: str | Path, collate,
                   text: dict, frame_stride: int = 1, keypoint_backend: str | None = None) -> None:
    """Write `model/` of a Sign2Text checkpoint: weights, config (the three networks' configs,
    input and text settings), the recognizer's gloss vocabulary and a copy of the text tokenizer."""
    inputs = {"collate": collate.model_dump(mode="json"), "frame_stride": frame_stride, "keypoint_backend": keypoint_backend}
    _save_text_model(directory, "sign2text", model=model, vocab=vocab, tokenizer_dir=tokenizer_dir, text=text, inputs=inputs)


def load_sign2text(path: str | Path, map_location: str | torch.device = "cpu") -> Sign2TextCheckpoint:
    """A Sign2Text checkpoint (or a run directory's best one) -> model (eval mode), vocabulary,
    tokenizer, input and text settings."""
    from models.sign2text import SignToText
    from pipelines.text_tokenizer import load_text_tokenizer
    from pipelines.video_collate import VideoCollateConfig

    ckpt = resolve_checkpoint(path)
    config = _read(ckpt, "sign2text")
    if not config:
        raise CheckpointError(f"{ckpt}: a sign2text checkpoint without model/{CONFIG_FILE}")
    run_config, metrics = _run_context(ckpt)
    model_dir = ckpt / MODEL_DIR
    model = SignToText.from_config_dict(config["model"])
    model.load_state_dict(torch.load(model_dir / WEIGHTS_FILE, map_location=map_location, weights_only=True))
    inputs = config["inputs"]
    return Sign2TextCheckpoint(
        path=ckpt, model=model.eval(), vocab=GlossVocabulary.load(model_dir / VOCAB_FILE),
        tokenizer=load_text_tokenizer(model_dir / TOKENIZER_DIR), collate=VideoCollateConfig.model_validate(inputs["collate"]),
        text=config["text"], frame_stride=inputs["frame_stride"], keypoint_backend=inputs.get("keypoint_backend"),
        metrics=metrics, run_config=run_config,
    )


def load_sign2text_sources(sign2gloss: str | Path, gloss2text: str | Path,
                           map_location: str | torch.device = "cpu") -> tuple[Sign2GlossCheckpoint, Gloss2TextCheckpoint, list[int]]:
    """The two checkpoints a Sign2Text run starts from (each a checkpoint or a run directory), checked
    to fit together: the same gloss vocabulary (after the Gloss2Text lower-casing), the widths the
    joined model relies on, and mBART positions for the longest clip the recognizer's input settings
    allow. Returns (sign2gloss, gloss2text, class_to_gloss: per recognizer class its Gloss2Text gloss id).
    Raises FileNotFoundError / CheckpointError naming the checkpoint and what does not fit."""
    loaded = []
    for kind, path, loader in (("sign2gloss", sign2gloss, load_sign2gloss), ("gloss2text", gloss2text, load_gloss2text)):
        try:
            loaded.append(loader(path, map_location))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"the {kind} checkpoint {path} is missing: {e}") from e
        except CheckpointError as e:
            raise CheckpointError(f"the {kind} checkpoint {path}: {e}") from e
    s2g, g2t = loaded
    where = f"sign2gloss {s2g.path} and gloss2text {g2t.path}"
    if s2g.model.config.num_classes != len(s2g.vocab):
        raise CheckpointError(f"{s2g.path}: its classifier has {s2g.model.config.num_classes} classes but its vocabulary "
                              f"{len(s2g.vocab)} entries")
    if g2t.model.gloss_embedding.num_embeddings != len(g2t.vocab):
        raise CheckpointError(f"{g2t.path}: its gloss embedding has {g2t.model.gloss_embedding.num_embeddings} rows but its "
                              f"vocabulary {len(g2t.vocab)} entries")
    lower = g2t.text["lowercase_glosses"]
    recognized = [g.lower() if lower else g for g in s2g.vocab.glosses]
    only_s2g, only_g2t = sorted(set(recognized) - set(g2t.vocab.glosses)), sorted(set(g2t.vocab.glosses) - set(recognized))
    if only_s2g or only_g2t or len(set(recognized)) != len(recognized):
        raise CheckpointError(
            f"{where}: the gloss vocabularies differ ({len(s2g.vocab.glosses)} vs {len(g2t.vocab.glosses)} glosses"
            f"{', compared lower-cased' if lower else ''}; only in sign2gloss: {only_s2g[:8]}, only in gloss2text: "
            f"{only_g2t[:8]}); both must be trained on the same corpus")
    class_to_gloss = [g2t.vocab.stoi[g] for g in s2g.vocab.itos[:3]] + [g2t.vocab.stoi[g] for g in recognized]
    steps = max_visual_steps(s2g)
    positions = g2t.model.config.max_position_embeddings
    if steps is not None and steps + 2 > positions:
        raise CheckpointError(
            f"{where}: the recognizer gives up to {steps} steps per clip (collate.max_frames "
            f"{s2g.collate.max_frames}, {s2g.model.config.num_blocks} S3D blocks), + 2 for </s> <lang>, more than the "
            f"mBART's {positions} positions; lower collate.max_frames or use an mBART with more positions")
    return s2g, g2t, class_to_gloss


def max_visual_steps(s2g: Sign2GlossCheckpoint) -> int | None:
    """The most output steps the recognizer gives a clip under its input settings (None: unbounded)."""
    max_frames = s2g.collate.max_frames
    if max_frames is None:
        return None
    return -(-max_frames // s2g.model.config.temporal_stride)


# ---- ISLR: shared encoder + one classifier per language, the class lists, the clip settings ----------------


@dataclass
class ISLRCheckpoint:
    """A loaded isolated-sign recognition checkpoint. `classes`: each language's glosses in head
    order (the primary language first), row i of a head's classifier being class i; `collate` and
    `clip_frames` the input settings (evaluation clips are made the same way)."""

    path: Path
    model: Any  # models.islr.ISLRModel, in eval mode
    classes: dict[str, list[str]]
    collate: Any  # pipelines.video_collate.VideoCollateConfig
    clip_frames: int = 16
    metrics: dict = field(default_factory=dict)
    run_config: dict = field(default_factory=dict)


def save_islr(directory: str | Path, *, model, classes: dict[str, list[str]], collate, clip_frames: int) -> None:
    """Write `model/` of an ISLR checkpoint (`directory` is that folder)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sizes = {lang: len(gs) for lang, gs in classes.items()}
    if sizes != model.config.num_classes:
        raise ValueError(f"save_islr: class lists {sizes} do not match the model's heads {model.config.num_classes}")
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    atomic_write_json(directory / CONFIG_FILE, {
        "family": "islr", "format": FORMAT, "model": model.config.model_dump(mode="json"), "classes": classes,
        "inputs": {"collate": collate.model_dump(mode="json"), "clip_frames": clip_frames},
    })


def load_islr(path: str | Path, map_location: str | torch.device = "cpu") -> ISLRCheckpoint:
    """An ISLR checkpoint (or a run directory's best one) -> model (eval mode), class lists, input settings."""
    from models.islr import ISLRConfig, ISLRModel
    from pipelines.video_collate import VideoCollateConfig

    ckpt = resolve_checkpoint(path)
    config = _read(ckpt, "islr")
    if not config:
        raise CheckpointError(f"{ckpt}: an ISLR checkpoint needs model/{CONFIG_FILE}")
    run_config, metrics = _run_context(ckpt)
    model = ISLRModel(ISLRConfig.model_validate(config["model"]))
    model.load_state_dict(torch.load(ckpt / MODEL_DIR / WEIGHTS_FILE, map_location=map_location, weights_only=True))
    return ISLRCheckpoint(path=ckpt, model=model.eval(), classes=config["classes"],
                          collate=VideoCollateConfig.model_validate(config["inputs"]["collate"]),
                          clip_frames=config["inputs"]["clip_frames"], metrics=metrics, run_config=run_config)
