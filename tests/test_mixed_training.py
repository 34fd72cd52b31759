"""Mixed recognition training end to end (jobs/train_recognition.py with `data.auxiliary`) and the
alpha sweep (configs/sweeps/tiny_alpha.yaml) on a toy corpus of two "languages" preprocessed to
shards on the fly: aaa primary, bbb auxiliary (the same sample names, glosses G0-G2 each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.config import load_config
from jobs.train_recognition import RecognitionConfig
from pipelines.auxiliary_labels import write_relabel

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpora(ray_local, tmp_path_factory):
    """Shards syn_aaa (train 6, dev 3) and syn_bbb (train 6), and a relabel file of bbb mapping its
    G0 to aaa's G0 and keeping G1, G2 as bbb:G1, bbb:G2."""
    from video_fixtures import preprocess_corpus, write_corpus

    root = tmp_path_factory.mktemp("mixed_corpus")
    write_corpus(root, "aaa", {"train": 6, "dev": 3}, num_frames=12)
    names = write_corpus(root, "bbb", {"train": 6}, num_frames=12)["train"]
    out = tmp_path_factory.mktemp("mixed_shards")
    preprocess_corpus(root, out, "aaa", ("train", "dev"))
    preprocess_corpus(root, out, "bbb", ("train",))
    relabel = out / "relabelled.jsonl"
    mapped = {"G0": "G0", "G1": "bbb:G1", "G2": "bbb:G2"}
    write_relabel(relabel, {n: [mapped[f"G{i % 3}"], mapped[f"G{(i + 1) % 3}"]] for i, n in enumerate(names)})
    return out, relabel


def _config(tmp_path, shards: Path, *overrides: str) -> RecognitionConfig:
    base = [f"out_dir={tmp_path / 'runs'}", "name=mixed", f"data.shards={shards}", "data.dataset=syn_aaa",
            f"data.auxiliary.aux.shards={shards}", "data.auxiliary.aux.dataset=syn_bbb", "decode.batch_size=1",
            "train.epochs=1", "final_eval=false"]
    return load_config(RecognitionConfig, REPO / "configs/recognition/synthetic_tiny.yaml", [*base, *overrides])


def test_a_relabel_file_naming_other_samples_is_refused(corpora, tmp_path):
    from jobs.train_recognition import prepare_assets

    shards, relabel = corpora
    bad = tmp_path / "bad.jsonl"
    bad.write_text(relabel.read_text() + json.dumps({"name": "train_999", "gloss": "G0 G1"}) + "\n")
    with pytest.raises(ValueError, match=rf"data.auxiliary.aux {bad}: sample 'train_999' is not in the auxiliary shards"):
        prepare_assets(_config(tmp_path, shards, f"data.auxiliary.aux.relabel={bad}"))


def test_one_epoch_with_a_relabelled_auxiliary_corpus(corpora, tmp_path):
    """alpha 0.5 on half the primary training split (3 of 6 videos, batches of 2 and 1): 1 then 1
    more auxiliary clip; the vocabulary is aaa's glosses then bbb's unmapped classes."""
    from jobs.train_recognition import run
    from training.checkpoint import load_sign2gloss

    shards, relabel = corpora
    cfg = _config(tmp_path, shards, f"data.auxiliary.aux.relabel={relabel}", "data.alpha=0.5", "data.primary_fraction=0.5")
    summary = run(cfg)
    run_dir = Path(summary["run_dir"])
    (h,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert h["train_aux_clips"] == 2 and h["train_clips"] == 5 and h["step"] == 2
    assert h["dev_sentences"] == 3 and h["dev_unknown_glosses"] == 0  # dev: the primary's alone
    assert summary["train_videos"] == 3 and summary["vocabulary"] == 5
    assert summary["auxiliary"] == {"aux": {"clips": 6, "classes": 3, "mapped": 1, "mapped_share": pytest.approx(1 / 3)}}
    assert summary["aux_mapped_share"] == pytest.approx(1 / 3)
    ck = load_sign2gloss(run_dir)
    assert ck.vocab.glosses == ["G0", "G1", "G2", "bbb:G1", "bbb:G2"]
    assert json.loads((run_dir / "assets" / "primary_vocab.json").read_text())["glosses"] == ["G0", "G1", "G2"]
    assert ck.decode_classes == 6  # blank, pad, unk, G0-G2: decoding never emits bbb:G1 or bbb:G2

    # evaluation decodes over those classes only; primary_classes_only=false keeps every class
    from training.evaluation import evaluate_sign2gloss

    scores = evaluate_sign2gloss(run_dir, out_dir=tmp_path / "eval", beam_width=1)
    hyps = [g for line in (tmp_path / "eval" / "hypotheses.tsv").read_text().splitlines() for g in line.split("\t")[1].split()]
    assert scores["decode_classes"] == 6 and not any(g.startswith("bbb:") for g in hyps)
    everything = run(_config(tmp_path, shards, f"data.auxiliary.aux.relabel={relabel}", "data.alpha=0.5",
                             "data.primary_fraction=0.5", "name=mixed_all", "decode.primary_classes_only=false"))
    assert load_sign2gloss(everything["run_dir"]).decode_classes is None


def test_a_two_trial_alpha_sweep(corpora, tmp_path):
    """configs/sweeps/tiny_alpha.yaml on the toy shards: alpha 0 (aaa alone) and 0.5 (bbb's own
    glosses as bbb:* classes), each a finished one-epoch recipe run in the results table."""
    from jobs.sweep import SweepConfig, run

    shards, _ = corpora
    cfg = load_config(SweepConfig, REPO / "configs/sweeps/tiny_alpha.yaml", [f"out_dir={tmp_path / 'sweeps'}"])
    cfg = cfg.model_copy(update={"overrides": [
        f"data.shards={shards}", "data.dataset=syn_aaa", f"data.auxiliary.sgsl_b.shards={shards}",
        "data.auxiliary.sgsl_b.dataset=syn_bbb", "decode.batch_size=1", "train.epochs=1", "final_eval=false"]})
    result = run(cfg)
    rows = {r["data.alpha"]: r for r in result["rows"]}
    assert sorted(rows) == [0.0, 0.5] and all(r["status"] == "finished" and r["epochs"] == 1 for r in rows.values())
    assert (rows[0.0]["vocabulary"], rows[0.0]["aux_mapped_share"]) == (3, None)  # monolingual: bbb unread
    assert (rows[0.5]["vocabulary"], rows[0.5]["aux_mapped_share"]) == (6, 0.0)  # bbb:G0-G2, nothing mapped
    for alpha, row in rows.items():
        run_dir = cfg.sweep_dir / "trials" / f"trial_{row['trial']}"
        (h,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert h["train_aux_clips"] == round(alpha * 6) and h["train_clips"] == 6 + round(alpha * 6)
    table = (cfg.sweep_dir / "results.md").read_text()
    assert "| data.alpha | status |" in table and "| 0.5 | finished |" in table and "| 0 | finished |" in table
    assert (cfg.sweep_dir / "data-alpha_best_dev_wer.png").read_bytes()[:4] == b"\x89PNG"
