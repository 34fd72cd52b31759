"""Gloss2Text on Ray Train: tiny runs on a toy corpus (resume, best checkpoint, evaluation) and the
shipped configs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from _translation_helpers import write_tiny_corpus

from common.config import ConfigError, load_config
from jobs.train_translation import TranslationConfig, run
from pipelines.records import Sample
from pipelines.text_tokenizer import WORD_BOUNDARY
from training.schedule import lr_factor

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "translation").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_validate(path, monkeypatch):
    monkeypatch.setenv("SIGNBRIDGE_DATA", "/data")
    cfg = load_config(TranslationConfig, path)
    if cfg.data.corpus.format == "synthetic":  # the demo corpus the project renders (demo_g2t)
        assert cfg.data.corpus.root and not cfg.data.corpus.files
    else:
        assert cfg.data.corpus.files["train"].startswith("/data/")
    if "cc25" in path.stem:
        assert cfg.model.pretrained_dir and cfg.model.prune_vocabulary and cfg.model.prune_splits == ["train"]
        assert cfg.model.freeze_embeddings  # as the public code fine-tunes mBART


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match="optim.lrr: unknown key"):
        load_config(TranslationConfig, REPO / "configs/translation/tiny.yaml", ["optim.lrr=1"])


def test_lr_schedules():
    cos = dict(warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, 110, **cos) == pytest.approx(0.1) and lr_factor(9, 110, **cos) == pytest.approx(1.0)
    assert lr_factor(60, 110, **cos) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert lr_factor(110, 110, **cos) == pytest.approx(0.1) and lr_factor(500, 110, **cos) == pytest.approx(0.1)
    assert lr_factor(399, 1000, warmup_steps=100, schedule="inverse_sqrt") == pytest.approx(0.5)
    assert lr_factor(0, 10, warmup_steps=0) == 1.0 and lr_factor(5, 10, warmup_steps=0) == pytest.approx(0.5)


def _toy_config(tmp_path, files, **over) -> TranslationConfig:
    overrides = [
        f"out_dir={tmp_path / 'runs'}", "name=toy",
        f"data.corpus.files.train={files['train']}", f"data.corpus.files.dev={files['dev']}",
        "data.train_limit=null", "data.dev_limit=null", "train.batch_tokens=160",
        *[f"{k}={v}" for k, v in over.items()],
    ]
    return load_config(TranslationConfig, REPO / "configs/translation/tiny.yaml", overrides)


@pytest.mark.slow
def test_train_resume_keep_best_and_evaluate(tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = write_tiny_corpus(tmp_path / "data")
    first = run(_toy_config(tmp_path, files, **{"train.epochs": 1, "final_eval": "false"}))
    run_dir = Path(first["run_dir"])
    assert first["epochs_run"] == [1]
    epoch1 = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(epoch1) == 1

    # "interrupted" after epoch 1: re-running with more epochs resumes and never repeats epoch 1
    second = run(_toy_config(tmp_path, files, **{"train.epochs": 6}))
    assert second["epochs_run"] == [2, 3, 4, 5, 6]
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert json.loads(epoch1[0]) == history[0]
    assert history[-1]["step"] > history[0]["step"] * 5  # optimizer steps continued, not restarted
    assert (run_dir / "learning_curve.png").stat().st_size > 1000

    # the best checkpoint is the one with the best dev BLEU-4; at most num_to_keep + the latest kept
    best = max(history, key=lambda h: h["dev_bleu4"])
    assert best["dev_bleu4"] > 0
    assert second["best_epoch"] == best["epoch"]
    assert second["best_dev"]["dev_bleu4"] == pytest.approx(best["dev_bleu4"])
    assert len(list(run_dir.glob("checkpoint_*"))) <= 3
    ckpt = Path(second["best_checkpoint"])
    assert {p.name for p in (ckpt / "model").iterdir()} == {"weights.pt", "config.json", "gloss_vocab.json", "tokenizer"}
    assert "final_dev" in second and (run_dir / "eval_dev" / "translations.tsv").exists()

    # evaluation of a held-out annotation file, and of predicted glosses with an unseen gloss
    from jobs.evaluate import main as evaluate_main

    held_out = tmp_path / "data" / "toy.test.corpus.csv"
    shutil.copyfile(files["dev"], held_out)
    summary = evaluate_main(["--task", "g2t", "--checkpoint", str(run_dir), "--annotations", str(held_out),
                             "--out", str(tmp_path / "eval_test")])
    assert summary["split"] == "test" and summary["sentences"] == 24
    assert summary["scores"] == pytest.approx(second["final_dev"])
    tsv = (tmp_path / "eval_test" / "translations.tsv").read_text().splitlines()
    assert tsv[0] == "name\tglosses\thypothesis\treference" and len(tsv) == 25
    assert (tmp_path / "eval_test" / "hypotheses.txt").read_text().count("\n") == 24
    # two checkpoints on the command line decode as an ensemble: the run's best with itself decodes like the run
    twice = evaluate_main(["--task", "g2t", "--checkpoint", str(run_dir), str(ckpt), "--annotations", str(held_out)])
    assert twice["checkpoint"] == [str(ckpt), str(ckpt)] and twice["out_dir"] == str(run_dir / "eval_test_ensemble2")
    assert (run_dir / "eval_test_ensemble2" / "translations.tsv").read_text().splitlines() == tsv

    names = [line.split("|")[0] for line in Path(files["dev"]).read_text().splitlines()[1:]]
    pred = tmp_path / "pred.tsv"
    # UNBEKANNT, unseen in training, is spelled with the toy texts' pieces (u, n, e, k, a, t; b is <unk>);
    # none of XYZ's letters occurs in them, so it stays <unk>
    pred.write_text("".join(f"{n}\tMORGEN UNBEKANNT XYZ\n" for n in names))
    s2g2t = evaluate_main(["--task", "g2t", "--checkpoint", str(run_dir), "--glosses", str(pred), "--out", str(tmp_path / "e2")])
    assert s2g2t["glosses"] == str(pred)
    assert s2g2t["encoding"]["glosses_embedded_from_spelling"] == 1 and s2g2t["encoding"]["unknown_gloss_tokens"] == 24

    pred.write_text(f"{names[0]}\t\n")
    with pytest.raises(ValueError, match=r"pred.tsv:1: sample '.*': empty gloss sequence"):
        evaluate_main(["--task", "g2t", "--checkpoint", str(run_dir), "--glosses", str(pred)])


@pytest.mark.slow
def test_two_workers_ddp(tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = write_tiny_corpus(tmp_path / "data")
    out = run(_toy_config(tmp_path, files, **{"train.epochs": 1, "scaling.num_workers": 2, "scaling.cpus_per_worker": 0.5,
                                               "final_eval": "false", "data.gloss_drop_prob": 0.1}))
    history = [json.loads(line) for line in (Path(out["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert out["epochs_run"] == [1] and len(history) == 1 and history[0]["dev_rouge"] >= 0


@pytest.mark.slow
def test_pretrained_mbart_is_pruned_and_fine_tuned(tmp_path, ray_local, monkeypatch):
    """The pretrained path end to end on a tiny saved mBART: pruning in the run's assets, training,
    evaluation."""
    from _translation_helpers import tiny_mbart_checkpoint

    from pipelines.text_tokenizer import load_text_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = write_tiny_corpus(tmp_path / "data")
    _, full_tok = tiny_mbart_checkpoint(tmp_path / "mbart")
    cfg = _toy_config(tmp_path, files, **{"train.epochs": 1, "model.pretrained_dir": tmp_path / "mbart", "name": "pre",
                                          "model.freeze_embeddings": "true"})
    out = run(cfg)
    assets = Path(out["run_dir"]) / "assets"
    manifest = json.loads((assets / "manifest.json").read_text())
    assert manifest["summary"]["pruning"]["full_vocab"] == len(full_tok)
    tok = load_text_tokenizer(assets / "tokenizer")
    assert len(tok) == manifest["summary"]["pruning"]["pruned_vocab"] < len(full_tok)
    assert tok.decode(tok.encode("im norden regen .")) == full_tok.decode(full_tok("im norden regen .", add_special_tokens=False)["input_ids"])
    assert out["epochs_run"] == [1] and "final_dev" in out

    # frozen embeddings: the trained text rows are the pruned checkpoint's, the gloss rows their init
    from models.translation import load_pruned_mbart
    from training.checkpoint import load_gloss2text
    from training.evaluation import translate_samples

    ck = load_gloss2text(out["run_dir"])
    pruned, _ = load_pruned_mbart(assets / "mbart")
    shared = pruned.get_input_embeddings().weight
    assert torch.equal(ck.model.mbart.get_input_embeddings().weight, shared)
    subwords = ck.model.gloss_subwords[ck.vocab.stoi["regen"]]
    assert torch.allclose(ck.model.gloss_embedding.weight[ck.vocab.stoi["regen"]], shared[subwords].mean(0))
    # a gloss never seen in training is read by its spelling, not as <unk>
    unseen = Sample("u", "dev", "s1", ("NORD", "REGENWIND"), "im norden regen wind .", None, None, "dgs")
    _, info = translate_samples(ck, [unseen], device=torch.device("cpu"), num_beams=1)
    assert info["encoding"]["glosses_embedded_from_spelling"] == 1 and info["encoding"]["unknown_gloss_tokens"] == 0
    # its row (appended after the training vocabulary) is the mean of its known pieces, while that call's glosses are set
    pieces = [i for i in ck.tokenizer.encode("regenwind") if i != ck.tokenizer.unk_id and ck.tokenizer.piece(i) != WORD_BOUNDARY]
    x, _ = ck.model.embed_source(torch.tensor([[len(ck.vocab)]]), torch.tensor([1]))
    assert torch.allclose(x[0, 0], shared[pieces].mean(0) * ck.model.embed_scale, atol=1e-6)
    assert ck.text["unseen_glosses"] == "spelling"  # saved with the checkpoint; a run with "unk" reads <unk>
    _, info = translate_samples(dataclasses.replace(ck, text={**ck.text, "unseen_glosses": "unk"}), [unseen],
                                device=torch.device("cpu"), num_beams=1)
    assert info["encoding"]["glosses_embedded_from_spelling"] == 0 and info["encoding"]["unknown_gloss_tokens"] == 1


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    """The training job killed (SIGKILL, its whole process group) after its first epochs; the same
    command again resumes from the latest checkpoint of the contract's layout, never repeating a
    finished epoch, and leaves a history without gaps."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from training.checkpoint import load_gloss2text
    from training.run_log import read_scalars

    files = write_tiny_corpus(tmp_path / "data")
    run_dir = tmp_path / "runs" / "toy"

    def command(epochs: int) -> list[str]:
        return [sys.executable, "jobs/train_translation.py", "--config", "configs/translation/tiny.yaml",
                f"out_dir={tmp_path / 'runs'}", "name=toy", f"data.corpus.files.train={files['train']}",
                f"data.corpus.files.dev={files['dev']}", "data.train_limit=null", "data.dev_limit=null",
                "train.batch_tokens=160", f"train.epochs={epochs}", "final_eval=false"]

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(command(40), cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(list(run_dir.glob("checkpoint_*/model/config.json"))) < 2:
            assert proc.poll() is None, "the training job ended before it could be killed"
            time.sleep(0.5)
        assert len(list(run_dir.glob("checkpoint_*/model/config.json"))) >= 2, "no checkpoint within 240 s"
        time.sleep(1.0)  # killed while training the next epoch (or, by chance, while reporting one)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = max(json.loads((p.parent.parent / "metrics.json").read_text())["epoch"]
               for p in run_dir.glob("checkpoint_*/model/config.json"))
    checkpoints = [p for p in run_dir.glob("checkpoint_*") if (p / "metrics.json").exists()]
    latest = load_gloss2text(max(checkpoints, key=lambda p: json.loads((p / "metrics.json").read_text())["epoch"]))
    assert latest.text["src_lang"] == "de_DE" and len(latest.vocab) > 4 and not latest.model.training

    again = subprocess.run(command(done + 2), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    # resumed after the last checkpoint Ray had registered: the last one written, or the one before
    # when the kill fell between writing a checkpoint and its registration (Ray then ignores it)
    start = summary["epochs_run"][0]
    assert start in (done, done + 1) and summary["epochs_run"] == list(range(start, done + 3))
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, done + 3))
    steps = [h["step"] for h in history]
    assert steps == [steps[0] * e for e in range(1, done + 3)]  # the optimizer's step count went on
    assert [e for e, _ in read_scalars(run_dir / "tensorboard", "dev/bleu4")] == list(range(1, done + 3))


def test_csl_daily_recipe_embeds_a_gloss_with_the_characters_the_decoder_writes(tmp_path, real_data_dir, monkeypatch):
    """The shipped CSL-Daily recipe on the first 400 real training sentences: a gloss's source
    embedding is the mean of the embedding rows of its spelling's pieces, the rows that encode (and,
    tied, predict) the text, and it follows them as they train; so a gloss written verbatim in the
    sentence is a copy away. Every gloss is spelled without `<unk>`."""
    from jobs.train_translation import build_model, prepare_assets
    from pipelines.text_tokenizer import load_text_tokenizer
    from pipelines.vocabulary import GlossVocabulary

    monkeypatch.setenv("SIGNBRIDGE_DATA", str(real_data_dir))
    cfg = load_config(TranslationConfig, REPO / "configs/translation/csl_daily_g2t.yaml",
                      [f"out_dir={tmp_path}", "data.train_limit=400"])
    assets = prepare_assets(cfg)
    tok = load_text_tokenizer(assets / "tokenizer")
    vocab = GlossVocabulary.load(assets / "gloss_vocab.json")
    gloss = "今天"
    ids = tok.encode(gloss)
    assert [tok.piece(i) for i in ids] == ["▁", "今", "天"]  # SentencePiece's word-start mark, then characters
    assert all(tok.unk_id not in tok.encode(g) for g in vocab.glosses)

    model = build_model(cfg, assets, tok, vocab)
    shared = model.mbart.get_input_embeddings().weight
    assert model.mbart.get_output_embeddings().weight is shared
    g = vocab.encode([gloss])[0]
    assert g != vocab.unk_id and model.gloss_subwords[g] == ids
    before = model.gloss_table()[g].detach().clone()
    torch.testing.assert_close(before, shared[ids].mean(0))
    with torch.no_grad():
        shared[ids] += 1.0
    torch.testing.assert_close(model.gloss_table()[g].detach(), before + 1.0)


def test_phoenix_glosses_can_be_embedded_from_the_texts_spelling(tmp_path, real_data_dir, monkeypatch):
    """`model.gloss_spelling: texts` on the first 400 real PHOENIX-2014T training sentences: KOENNEN is
    embedded from the sub-words of "können", the texts' word; a gloss the texts write as it is keeps its
    own pieces, and without the key nothing is respelled."""
    from jobs.train_translation import build_model, gloss_spellings, load_split, prepare_assets
    from pipelines.text_tokenizer import load_text_tokenizer
    from pipelines.vocabulary import GlossVocabulary

    monkeypatch.setenv("SIGNBRIDGE_DATA", str(real_data_dir))
    overrides = [f"out_dir={tmp_path}", "data.train_limit=400", "model.gloss_embedding=subwords"]
    cfg = load_config(TranslationConfig, REPO / "configs/translation/phoenix2014t_g2t.yaml", [*overrides, "model.gloss_spelling=texts"])
    assets = prepare_assets(cfg)
    tok = load_text_tokenizer(assets / "tokenizer")
    vocab = GlossVocabulary.load(assets / "gloss_vocab.json")
    train = load_split(cfg, "train", 400)
    spellings = gloss_spellings(cfg, vocab, train)
    assert spellings["koennen"] == "können" and "regen" not in spellings
    assert all(g in vocab.glosses for g in spellings)
    model = build_model(cfg, assets, tok, vocab, spellings)
    assert model.gloss_subwords[vocab.stoi["koennen"]] == tok.encode("können") != tok.encode("koennen")
    assert model.gloss_subwords[vocab.stoi["regen"]] == tok.encode("regen")
    plain = load_config(TranslationConfig, REPO / "configs/translation/phoenix2014t_g2t.yaml", overrides)
    assert gloss_spellings(plain, vocab, train) is None
