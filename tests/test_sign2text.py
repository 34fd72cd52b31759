"""Sign2Text joint training (jobs/train_sign2text.py): loading and checking the two source
checkpoints, the backbone feature cache (training/feature_cache.py), and a tiny run end to end on
a toy corpus preprocessed to shards (dev BLEU, resume, the checkpoint alone translating)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from common.config import load_config
from jobs.train_sign2text import Sign2TextConfig
from models.translation import GlossToText, build_scratch_mbart
from models.two_stream import TwoStreamConfig, TwoStreamSLR
from pipelines.video_collate import VideoCollateConfig
from pipelines.vocabulary import GlossVocabulary
from training.checkpoint import CheckpointError, load_sign2text, load_sign2text_sources, save_gloss2text, save_sign2gloss

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["regen im norden", "sonne im süden", "morgen wind", "heute kalt und nass", "nachts warm"]


# ---- tiny source checkpoints, built directly in the checkpoint contract's layout ---------------------


def _best(run: Path, ckpt: Path) -> Path:
    (run / "best_checkpoint.json").write_text(json.dumps({"best_checkpoint": str(ckpt)}))
    return run


def tiny_sign2gloss(run: Path, glosses=("G0", "G1", "G2"), max_frames: int = 64, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = TwoStreamSLR(TwoStreamConfig(num_classes=len(glosses) + 3, streams=["rgb"], width=0.0625, rgb_size=32,
                                         pyramid=False, head_hidden=16, head_ff=16, dropout=0.0, bn_momentum=0.1))
    ckpt = run / "checkpoint_000001"
    save_sign2gloss(ckpt / "model", model=model.eval(), vocab=GlossVocabulary(list(glosses)),
                    collate=VideoCollateConfig(height=32, width=32, max_frames=max_frames))
    return _best(run, ckpt)


def tiny_gloss2text(run: Path, glosses=("g0", "g1", "g2"), max_positions: int = 64) -> Path:
    from pipelines.text_tokenizer import SentencePieceTokenizer

    ckpt = run / "checkpoint_000001"
    tok_dir = run / "assets" / "tokenizer"
    tok = SentencePieceTokenizer.train([f"{t} text {i}" for i in range(12) for t in TEXTS], tok_dir, vocab_size=60,
                                       languages=["de_DE"])
    vocab = GlossVocabulary(list(glosses))
    mbart = build_scratch_mbart(len(tok), d_model=16, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=32,
                                dropout=0.0, max_position_embeddings=max_positions)
    model = GlossToText(mbart, len(vocab), src_lang_id=tok.lang_id("de_DE"), tgt_lang_id=tok.lang_id("de_DE"))
    save_gloss2text(ckpt / "model", model=model, tokenizer_dir=tok_dir, vocab=vocab,
                    text={"lowercase_glosses": True, "max_source_length": 16, "max_target_length": 16,
                          "src_lang": "de_DE", "tgt_lang": "de_DE"})
    return _best(run, ckpt)


# ---- configs and the source checks (fast) -------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "demo", "phoenix2014t", "csl_daily"])
def test_shipped_configs_validate(name):
    cfg = load_config(Sign2TextConfig, REPO / "configs" / "sign2text" / f"{name}.yaml")
    assert (cfg.loss.ctc_weight, cfg.loss.translation_weight) == (1.0, 1.0) and cfg.uses_cache()
    assert cfg.model.mapper_input == "gloss_features" and not cfg.train.finetune_backbone
    if name == "demo":
        from jobs.train_translation import TranslationConfig

        g2t = load_config(TranslationConfig, REPO / "configs/translation/demo_g2t.yaml")
        assert Path(cfg.model.gloss2text) == Path(g2t.out_dir) / g2t.name and g2t.model.pretrained_dir is None
        assert cfg.model.sign2gloss == "outputs/demo/recognition/demo_single_stream"
        assert g2t.data.corpus.root == "outputs/demo/corpus" and g2t.data.corpus.language == "sgsl-a"
    if name in ("phoenix2014t", "csl_daily"):  # the public code's joint-training settings
        assert (cfg.optim.lr_visual_head, cfg.optim.lr_mapper, cfg.optim.lr_translation) == (1e-3, 1e-3, 1e-5)
        assert (cfg.optim.weight_decay, cfg.train.epochs, cfg.train.batch_size, cfg.loss.label_smoothing) == (1e-3, 40, 8, 0.2)


def test_sources_load_and_fail_clearly(tmp_path):
    s2g, g2t = tiny_sign2gloss(tmp_path / "s2g"), tiny_gloss2text(tmp_path / "g2t")
    a, b, class_to_gloss = load_sign2text_sources(s2g, g2t)
    assert a.vocab.glosses == ["G0", "G1", "G2"] and b.vocab.glosses == ["g0", "g1", "g2"] and class_to_gloss == [0, 1, 2, 3, 4, 5]

    # lower-casing changes the order ('_' sorts after upper-case letters, before lower-case ones)
    odd = tiny_sign2gloss(tmp_path / "odd", glosses=("ZZ", "__ON__"))
    _, _, perm = load_sign2text_sources(odd, tiny_gloss2text(tmp_path / "odd_g2t", glosses=("__on__", "zz")))
    assert perm == [0, 1, 2, 4, 3]

    with pytest.raises(FileNotFoundError, match=r"the sign2gloss checkpoint .*nowhere is missing: .*neither a checkpoint"):
        load_sign2text_sources(tmp_path / "nowhere", g2t)
    with pytest.raises(FileNotFoundError, match=r"the gloss2text checkpoint .*nowhere is missing"):
        load_sign2text_sources(s2g, tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"the sign2gloss checkpoint .*g2t: .*a gloss2text checkpoint, not a sign2gloss one"):
        load_sign2text_sources(g2t, g2t)
    other = tiny_gloss2text(tmp_path / "other", glosses=("g0", "g1", "g9"))
    with pytest.raises(CheckpointError, match=r"gloss vocabularies differ \(3 vs 3 glosses, compared lower-cased; only in "
                                              r"sign2gloss: \['g2'\], only in gloss2text: \['g9'\]\)"):
        load_sign2text_sources(s2g, other)
    short = tiny_gloss2text(tmp_path / "short", max_positions=12)
    with pytest.raises(CheckpointError, match=r"up to 16 steps per clip \(collate.max_frames 64, 4 S3D blocks\), \+ 2 for "
                                              r"</s> <lang>, more than the mBART's 12 positions"):
        load_sign2text_sources(s2g, short)
    load_sign2text_sources(tiny_sign2gloss(tmp_path / "s2g_40", max_frames=40), short)  # 10 steps + 2 fit 12


# ---- Ray: the feature cache and a tiny run ----------------------------------------------------------


@pytest.fixture(scope="module")
def shards(ray_local, tmp_path_factory):
    """A toy corpus (48x40 mp4 + keypoints, glosses G0-G2, German texts) preprocessed to shards."""
    from video_fixtures import write_corpus

    from jobs.preprocess import PreprocessConfig, run as preprocess

    root = tmp_path_factory.mktemp("s2t_corpus")
    write_corpus(root, "aaa", {"train": 8, "dev": 3}, num_frames=12)
    for split in ("train", "dev"):
        csv = root / "aaa" / f"aaa.{split}.corpus.csv"
        lines = csv.read_text().splitlines()
        lines = [lines[0]] + [f"{line.rsplit('|', 1)[0]}|{TEXTS[i % len(TEXTS)]}" for i, line in enumerate(lines[1:])]
        csv.write_text("\n".join(lines) + "\n")
    out = tmp_path_factory.mktemp("s2t_shards")
    preprocess(PreprocessConfig.model_validate({
        "name": "syn_{language}", "out_dir": str(out),
        "corpus": {"name": "synthetic", "format": "synthetic", "language": "aaa", "root": str(root)},
        "splits": ["train", "dev"], "frames": {"resize": "none"}, "keypoints": {"backend": "none"},
        "shards": {"videos_per_block": 4},
        "resources": {"decode_cpus": 0.5, "encode_cpus": 0.5, "videos_per_batch": 2},
    }))
    return out


def _feature_files(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_feature_cache_matches_the_backbone_is_reused_and_keyed_by_checkpoint(tmp_path, shards):
    from pipelines.recognition_batches import RecognitionCollate, shard_columns
    from pipelines.shards import read_shards
    from pipelines.video_collate import rows_of
    from training.checkpoint import load_sign2gloss
    from training.feature_cache import build_feature_cache, read_feature_split

    s2g = tiny_sign2gloss(tmp_path / "s2g")
    first = build_feature_cache(s2g, str(shards), "syn_aaa", ["train", "dev"])
    assert first["computed"] == ["train", "dev"]
    rows = read_feature_split(first["splits"]["dev"]).take_all()
    assert sorted(r["name"] for r in rows) == ["dev_008", "dev_009", "dev_010"]

    # each cached row equals the backbone on that clip alone (evaluation view of the checkpoint's collate)
    ck = load_sign2gloss(s2g)
    collate = RecognitionCollate(ck.collate, train=False, glosses=ck.vocab.glosses)
    dev = read_shards(str(shards), "syn_aaa", "dev", columns=shard_columns(False))
    source = {str(r["name"]): r for b in dev.iter_batches(batch_format="numpy", batch_size=8) for r in rows_of(b)}
    for row in rows:
        clip = collate([source[row["name"]]])
        with torch.no_grad():
            want = ck.model.backbone(clip["frames"], clip["frame_lengths"])
        got = np.asarray(row["features_rgb"])
        frames = 12 + int(row["name"][-3:]) % 3  # write_corpus's clip lengths
        assert row["steps"] == int(want["lengths"][0]) == -(-frames // 4)  # a clip alone: ceil(T / 4) steps
        assert row["text"] == TEXTS[int(row["name"][-3:]) - 8] and row["gloss"] == str(source[row["name"]]["gloss"])
        np.testing.assert_allclose(got, want["stream_features"]["rgb"][0, : row["steps"]].numpy(), rtol=1e-5, atol=1e-6)

    # a second build finds it: nothing computed, no file rewritten
    before = _feature_files(Path(first["dir"]))
    again = build_feature_cache(s2g, str(shards), "syn_aaa", ["train", "dev"])
    assert again["computed"] == [] and again["dir"] == first["dir"] and _feature_files(Path(first["dir"])) == before

    # another checkpoint (same path, new weights) is another cache
    tiny_sign2gloss(tmp_path / "s2g", seed=1)
    changed = build_feature_cache(s2g, str(shards), "syn_aaa", ["dev"])
    assert changed["key"] != first["key"] and changed["computed"] == ["dev"]


def _config(tmp_path, shards, s2g, g2t, **over) -> Sign2TextConfig:
    overrides = [f"out_dir={tmp_path / 'runs'}", "name=tiny", f"data.shards={shards}", "data.dataset=syn_aaa",
                 f"model.sign2gloss={s2g}", f"model.gloss2text={g2t}", *[f"{k}={v}" for k, v in over.items()]]
    return load_config(Sign2TextConfig, REPO / "configs/sign2text/tiny.yaml", overrides)


def test_joint_training_resumes_keeps_best_and_its_checkpoint_translates_alone(tmp_path, shards):
    from jobs.train_sign2text import run
    from training.evaluation import evaluate_sign2text

    # weights of their own: the cache test's checkpoints (same seed -> same weights) left their caches in `shards`
    s2g, g2t = tiny_sign2gloss(tmp_path / "s2g", seed=3), tiny_gloss2text(tmp_path / "g2t")
    first = run(_config(tmp_path, shards, s2g, g2t, **{"train.epochs": 1, "final_eval": "false"}))
    run_dir = Path(first["run_dir"])
    assert first["epochs_run"] == [1] and first["feature_cache"]["computed"] == ["train", "dev"]

    # "interrupted" after epoch 1: the same run with 2 epochs continues at epoch 2, reusing the cache
    second = run(_config(tmp_path, shards, s2g, g2t, **{"train.epochs": 2}))
    assert second["epochs_run"] == [2] and second["feature_cache"]["computed"] == []
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and history[1]["step"] == 2 * history[0]["step"] == 4  # 8 clips / 4
    for h in history:
        assert {"dev_bleu1", "dev_bleu4", "dev_rouge", "dev_wer"} <= h.keys() and h["dev_sentences"] == 3
        assert np.isfinite(h["train_loss"]) and h["train_loss"] == pytest.approx(h["train_ctc"] + h["train_translation"], rel=1e-4)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    best = max(history, key=lambda h: h["dev_bleu4"])
    assert second["best_dev"]["dev_bleu4"] == best["dev_bleu4"]

    # the checkpoint contract: model/ holds what frames -> glosses and text needs
    ckpt = Path(second["best_checkpoint"])
    assert {p.name for p in ckpt.iterdir()} == {"model", "config.yaml", "train_state.pt", "metrics.json"}
    assert {p.name for p in (ckpt / "model").iterdir()} == {"weights.pt", "config.json", "gloss_vocab.json", "tokenizer"}
    loaded = load_sign2text(run_dir)
    assert loaded.path == ckpt and loaded.vocab.glosses == ["G0", "G1", "G2"] and loaded.text["tgt_lang"] == "de_DE"
    assert loaded.collate.height == 32 and not loaded.model.training and loaded.model.mapper.input == "gloss_features"
    init = load_sign2text(run_dir / "assets" / "init")
    backbone = lambda m: m.recognizer.backbones["rgb"].state_dict()  # noqa: E731
    assert all(torch.equal(v, backbone(init.model)[k]) for k, v in backbone(loaded.model).items())  # frozen
    assert not torch.equal(init.model.mapper.mlp[0].weight, loaded.model.mapper.mlp[0].weight)  # trained

    # the final evaluation translated dev from frames with the checkpoint alone; again, by hand
    assert second["final_dev"]["bleu4"] >= 0 and (run_dir / "eval_dev" / "translations.tsv").exists()
    summary = evaluate_sign2text(run_dir, out_dir=tmp_path / "eval", num_beams=1)
    assert summary["sentences"] == 3 and set(summary["scores"]) >= {"bleu1", "bleu4", "rouge"}
    lines = (tmp_path / "eval" / "translations.tsv").read_text().splitlines()
    assert lines[0] == "name\thypothesis\treference" and [line.split("\t")[2] for line in lines[1:]] == TEXTS[:3]
    assert os.path.getsize(tmp_path / "eval" / "glosses.tsv") > 0


@pytest.mark.parametrize("finetune", [False, True], ids=["frozen_every_step", "finetune"])
def test_training_from_frames_with_the_backbone_frozen_or_fine_tuned(tmp_path, finetune, one_torch_thread):
    """The recipe's epoch from frames (no feature cache): text targets beside the recognition batch,
    one Adam group per module; the backbone moves only when fine-tuned."""
    from test_train_recognition import ListShard
    from video_fixtures import make_frames

    from jobs.train_sign2text import build_model, epoch_batches, make_collate, make_optimizer, train_epoch
    from training.checkpoint import save_sign2text
    from training.state import Progress

    s2g, g2t = tiny_sign2gloss(tmp_path / "s2g"), tiny_gloss2text(tmp_path / "g2t")
    cfg = _config(tmp_path, "/nowhere", s2g, g2t, **{"data.feature_cache": "false", "train.finetune_backbone": str(finetune).lower(),
                                                    "data.shuffle_buffer": 0, "optim.lr_backbone": 1e-2})
    assert not cfg.uses_cache()
    model, a, b = build_model(cfg)
    save_sign2text(tmp_path / "init" / "model", model=model, vocab=a.vocab, tokenizer_dir=b.path / "model" / "tokenizer",
                   collate=a.collate, text=b.text)
    ck = load_sign2text(tmp_path / "init")
    model = ck.model.train()
    rows = [{"name": f"v{i}", "gloss": "G0 G1", "text": TEXTS[i % 5], "num_frames": 12 + i % 3, "height": 40, "width": 48,
             "frames": make_frames(12 + i % 3, i)} for i in range(8)]
    collate = make_collate(cfg, ck, train=True, generator=0)
    batches = list(epoch_batches(ListShard(rows), collate, cfg, epoch=0, rank=0))
    assert [len(x["names"]) for x in batches] == [4, 4] and batches[0]["frames"].shape[-1] == 32
    assert batches[0]["decoder_input_ids"][:, 0].eq(ck.tokenizer.lang_id("de_DE")).all()
    assert batches[0]["text_labels"].eq(ck.tokenizer.eos_id).sum() == 4  # one </s> per text

    optimizer = make_optimizer(model, cfg)
    names = [g["name"] for g in optimizer.param_groups]
    assert names == (["backbone", "visual_head", "mapper", "translation"] if finetune else ["visual_head", "mapper", "translation"])
    assert optimizer.param_groups[names.index("translation")]["lr"] == cfg.optim.lr_translation
    before = {k: v.clone() for k, v in model.recognizer.backbones.state_dict().items()}
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    sums = train_epoch(model, model, iter(batches), optimizer, scheduler, Progress(), cfg, torch.device("cpu"))
    assert sums["clips"] == 8 and sums["steps"] == 2 and np.isfinite(sums["losses"]["total"])
    after = model.recognizer.backbones.state_dict()
    moved = [k for k, v in before.items() if v.dtype.is_floating_point and not torch.equal(v, after[k])]
    assert bool(moved) == finetune  # frozen: weights and BatchNorm statistics untouched


def test_feature_rows_stay_float32_whether_or_not_a_batch_has_equal_lengths(ray_local):
    """A batch of clips with equal step counts and one with unequal ones write the same column
    type (the demo's clips are all 80 frames: every batch was equal, and stacked to float64)."""
    import ray

    from training.feature_cache import ragged_column

    equal = ragged_column([np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)])
    assert equal.shape == (2,) and equal.dtype == object and all(a.dtype == np.float32 and a.shape == (2, 3) for a in equal)

    def features(batch: dict) -> dict:
        steps = [2, 2] if batch["id"][0] == 0 else [1, 3]
        return {"id": batch["id"], "f": ragged_column([np.full((n, 3), i, np.float32) for i, n in zip(batch["id"], steps)])}

    rows = ray.data.from_items([{"id": i} for i in range(4)], override_num_blocks=2).map_batches(features, batch_size=2).take_all()
    assert [np.asarray(r["f"]).shape for r in sorted(rows, key=lambda r: r["id"])] == [(2, 3), (2, 3), (1, 3), (3, 3)]
    assert {np.asarray(r["f"]).dtype for r in rows} == {np.dtype(np.float32)}
