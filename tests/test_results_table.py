"""The four tasks' results table (training/results_table.py, `jobs/evaluate.py --task table`)."""

from __future__ import annotations

import json

import pytest

from training.results_table import markdown_table, results_table, task_metrics

TRANSLATION = {"bleu1": 53.951, "bleu2": 41.12, "bleu3": 33.14, "bleu4": 27.6749, "rouge": 53.1}


def test_markdown_of_a_hand_case():
    table = results_table({
        ("s2g", "dev"): {"wer": 21.8}, ("s2g", "test"): {"wer": 22.449},
        ("g2t", "dev"): task_metrics("g2t", {"task": "g2t", "scores": TRANSLATION}),
        ("s2t", "test"): task_metrics("s2t", TRANSLATION),
    })
    dash = "– | – | – | – | –"
    assert markdown_table(table) == (
        "| Task | Dev WER | Dev ROUGE | Dev BLEU-1 | Dev BLEU-2 | Dev BLEU-3 | Dev BLEU-4 | Test WER | Test ROUGE | Test BLEU-1 | Test BLEU-2 | Test BLEU-3 | Test BLEU-4 |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| Sign2Gloss | 21.80 | {dash} | 22.45 | {dash} |\n"
        f"| Gloss2Text | – | 53.10 | 53.95 | 41.12 | 33.14 | 27.67 | – | {dash} |\n"
        f"| Sign2Gloss2Text | – | {dash} | – | {dash} |\n"
        f"| Sign2Text | – | {dash} | – | 53.10 | 53.95 | 41.12 | 33.14 | 27.67 |\n"
    )
    assert table["rows"][0] == {"task": "Sign2Gloss", "dev": {"wer": 21.8, "rouge": None, "bleu1": None, "bleu2": None,
                                                             "bleu3": None, "bleu4": None},
                                "test": {"wer": 22.449, "rouge": None, "bleu1": None, "bleu2": None, "bleu3": None, "bleu4": None}}


def test_cells_from_evaluation_summaries_and_errors_that_name_the_file():
    assert task_metrics("s2g", {"wer": {"rgb": 30.0, "fuse": 25.5}, "head": "fuse"}) == {"wer": 25.5}
    assert task_metrics("s2g2t", {"task": "s2g2t", "wer": 25.5, "scores": TRANSLATION})["bleu4"] == 27.6749
    with pytest.raises(ValueError, match=r"s2t.json: Sign2Text result lacks \['bleu3', 'bleu4'\]"):
        task_metrics("s2t", {"bleu1": 1, "bleu2": 1, "rouge": 1}, source="s2t.json")
    with pytest.raises(ValueError, match="x.json: WER per head .* but no reported head"):
        task_metrics("s2g", {"wer": {"rgb": 30.0}}, source="x.json")
    with pytest.raises(ValueError, match="unknown task 'sign2text'"):
        task_metrics("sign2text", {})
    with pytest.raises(ValueError, match=r"cell \('g2t', 'train'\): .* splits \['dev', 'test'\]"):
        results_table({("g2t", "train"): {}})


def test_evaluate_table_command_writes_markdown_and_json(tmp_path):
    from jobs.evaluate import main as evaluate_main

    (tmp_path / "s2g.json").write_text(json.dumps({"task": "s2g", "head": "rgb", "wer": {"rgb": 40.0}}))
    (tmp_path / "s2t.json").write_text(json.dumps(TRANSLATION))
    table = evaluate_main(["--task", "table", "--out", str(tmp_path / "out"), "--result", f"s2g:test={tmp_path / 's2g.json'}",
                           "--result", f"s2t:dev={tmp_path / 's2t.json'}"])
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == table
    lines = (tmp_path / "out" / "results.md").read_text().splitlines()
    assert lines[2].startswith("| Sign2Gloss | – |") and lines[2].endswith("| 40.00 | – | – | – | – | – |")
    assert lines[5] == "| Sign2Text | – | 53.10 | 53.95 | 41.12 | 33.14 | 27.67 | – | – | – | – | – | – |"
    with pytest.raises(SystemExit):
        evaluate_main(["--task", "table", "--out", str(tmp_path / "out"), "--result", "s2g-dev.json"])
