"""Sign2Gloss2Text (training.evaluation.evaluate_sign2gloss2text, `jobs/evaluate.py --task s2g2t`): the
cascade on a toy corpus preprocessed to shards, with a tiny recogniser and a tiny Gloss2Text model
fitted here, gives what the two evaluations run by hand give (recognise, then `--task g2t --glosses`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from common.config import load_config, save_config
from models.two_stream import TwoStreamConfig, TwoStreamSLR
from pipelines.video_collate import VideoCollateConfig
from pipelines.vocabulary import GlossVocabulary
from training.checkpoint import save_gloss2text, save_sign2gloss

REPO = Path(__file__).resolve().parents[1]
WORDS = {"G0": "regen", "G1": "sonne", "G2": "wind"}  # each gloss is one word of the text


@pytest.fixture(scope="module")
def corpus(ray_local, tmp_path_factory):
    """(corpus root, shards root): 6 train and 4 dev videos of write_corpus, texts rewritten to the
    words of their glosses."""
    from video_fixtures import preprocess_corpus, write_corpus

    root = tmp_path_factory.mktemp("s2g2t_corpus")
    write_corpus(root, "aaa", {"train": 6, "dev": 4}, num_frames=12)
    for split in ("train", "dev"):
        csv = root / "aaa" / f"aaa.{split}.corpus.csv"
        head, *rows = csv.read_text().splitlines()
        rows = ["|".join((p := r.split("|"))[:6] + [" ".join(WORDS[g] for g in p[5].split()) + " ."]) for r in rows]
        csv.write_text("\n".join([head, *rows]) + "\n")
    shards = tmp_path_factory.mktemp("s2g2t_shards")
    preprocess_corpus(root, shards)
    return root, shards


def _finish_run(ckpt: Path, run_config: dict | None = None) -> Path:
    """metrics.json, config.yaml and the run directory's best_checkpoint.json around `ckpt/model`."""
    (ckpt / "metrics.json").write_text(json.dumps({"epoch": 1, "dev_head": "rgb"}))
    if run_config is not None:
        (ckpt / "config.yaml").write_text(yaml.safe_dump(run_config))
    (ckpt.parent / "best_checkpoint.json").write_text(json.dumps({"best_checkpoint": str(ckpt)}))
    return ckpt.parent


def sign2gloss_run(directory: Path, shards: Path, blank_bias: float) -> Path:
    """A random tiny RGB recogniser whose classifiers' bias moves <blank> by `blank_bias`: very negative
    (with <pad> and <unk> too) -> it always emits glosses, very positive -> never."""
    vocab = GlossVocabulary(["G0", "G1", "G2"])
    torch.manual_seed(0)
    model = TwoStreamSLR(TwoStreamConfig(num_classes=len(vocab.itos), streams=["rgb"], width=0.0625, rgb_size=32,
                                         pyramid=False, head_hidden=16, head_ff=16)).eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("classifier"):
                module.bias[: 3 if blank_bias < 0 else 1] += blank_bias
    ckpt = directory / "checkpoint_000001"
    save_sign2gloss(ckpt / "model", model=model, vocab=vocab, collate=VideoCollateConfig(height=32, width=32))
    return _finish_run(ckpt, {"data": {"shards": str(shards), "dataset": "syn_aaa", "dev_split": "dev"},
                              "decode": {"beam_width": 1, "batch_size": 2}})


def gloss2text_run(directory: Path, root: Path, steps: int = 150) -> Path:
    """The tiny Gloss2Text recipe's assets and model (jobs/train_translation.py) fitted to the toy train
    split with a plain full-batch loop."""
    from jobs.train_translation import TranslationConfig, absolute_paths, build_model, load_split, prepare_assets
    from pipelines.text_tokenizer import load_text_tokenizer
    from pipelines.translation_data import collate, encode_examples

    cfg = absolute_paths(load_config(TranslationConfig, REPO / "configs/translation/tiny.yaml", [
        f"out_dir={directory}", "name=g2t", "data.corpus.name=synthetic", "data.corpus.format=synthetic",
        "data.corpus.language=aaa", f"data.corpus.root={root}", "tokenizer.vocab_size=40", "decode.num_beams=1"]))
    assets = prepare_assets(cfg)
    tokenizer, vocab = load_text_tokenizer(assets / "tokenizer"), GlossVocabulary.load(assets / "gloss_vocab.json")
    model = build_model(cfg, assets, tokenizer, vocab)
    examples = encode_examples(load_split(cfg, "train"), vocab, tokenizer, max_source_length=cfg.data.max_source_length,
                               max_target_length=cfg.data.max_target_length)
    batch = collate(examples, tgt_lang_id=model.tgt_lang_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(batch["gloss_ids"], batch["gloss_lengths"], batch["decoder_input_ids"], labels=batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ckpt = cfg.run_dir / "checkpoint_000001"
    text = cfg.data.model_dump(include={"lowercase_glosses", "max_source_length", "max_target_length", "src_lang", "tgt_lang"})
    save_gloss2text(ckpt / "model", model=model.eval(), tokenizer_dir=assets / "tokenizer", vocab=vocab, text=text)
    save_config(cfg, ckpt / "config.yaml")
    return _finish_run(ckpt)


def _translations(folder: Path) -> dict[str, tuple[str, str, str]]:
    rows = (folder / "translations.tsv").read_text().splitlines()[1:]
    return {(p := r.split("\t"))[0]: tuple(p[1:]) for r in rows}


def test_cascade_equals_recognising_then_translating_by_hand(corpus, tmp_path, one_torch_thread):
    from jobs.evaluate import main as evaluate_main
    from training.evaluation import evaluate_gloss2text, evaluate_sign2gloss

    root, shards = corpus
    s2g = sign2gloss_run(tmp_path / "s2g", shards, blank_bias=-1e4)
    g2t = gloss2text_run(tmp_path / "g2t_runs", root)
    # the translator learned the toy language: reference glosses translate exactly
    assert evaluate_gloss2text(g2t, split="dev", out_dir=tmp_path / "g2t_ref")["scores"]["bleu4"] == pytest.approx(100.0)

    cascade = evaluate_main(["--task", "s2g2t", "--sign2gloss", str(s2g), "--gloss2text", str(g2t), "--out", str(tmp_path / "cascade")])

    by_hand_s2g = evaluate_sign2gloss(s2g, out_dir=tmp_path / "by_hand_s2g")
    by_hand = evaluate_gloss2text(g2t, split="dev", glosses_file=tmp_path / "by_hand_s2g" / "hypotheses.tsv",
                                  out_dir=tmp_path / "by_hand_g2t")
    assert cascade["sentences"] == by_hand["sentences"] == 4 and cascade["empty_recognitions"] == 0
    assert cascade["wer"] == pytest.approx(by_hand_s2g["wer"]["rgb"]) and cascade["head"] == "rgb"
    assert cascade["scores"] == pytest.approx(by_hand["scores"])
    assert 0 < cascade["scores"]["bleu1"] < 100  # random recognition, a learned translator: some words right
    assert _translations(tmp_path / "cascade") == _translations(tmp_path / "by_hand_g2t")
    assert (tmp_path / "cascade" / "sign2gloss" / "hypotheses.tsv").read_text() == \
        (tmp_path / "by_hand_s2g" / "hypotheses.tsv").read_text()
    assert json.loads((tmp_path / "cascade" / "scores.json").read_text())["scores"] == cascade["scores"]


def test_videos_recognised_as_nothing_get_empty_translations(corpus, tmp_path, one_torch_thread):
    from training.evaluation import evaluate_sign2gloss2text

    root, shards = corpus
    s2g = sign2gloss_run(tmp_path / "s2g", shards, blank_bias=1e4)
    g2t = gloss2text_run(tmp_path / "g2t_runs", root, steps=1)
    summary = evaluate_sign2gloss2text(s2g, g2t, limit=3)
    out = s2g / "eval_s2g2t_dev"
    assert summary["out_dir"] == str(out) and summary["empty_recognitions"] == summary["sentences"] == 3
    assert summary["wer"] == pytest.approx(100.0)  # every reference gloss deleted
    assert summary["scores"]["bleu1"] == 0.0 and summary["scores"]["rouge"] == 0.0
    assert (out / "hypotheses.txt").read_text() == "\n\n\n"
    assert [r.split("\t")[1:3] for r in (out / "translations.tsv").read_text().splitlines()[1:]] == [["", ""]] * 3
