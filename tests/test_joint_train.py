"""jobs/joint_train.py, the progressive pipeline: its config, how each stage's recipe config is
composed, and when a stage is trained, skipped or taken as given. The whole pipeline on the tiny
corpus runs in tests/test_job_submit.py (submitted to a `ray start` cluster) and in
`test_pipeline_reruns_nothing_and_writes_the_table` below (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from common.config import ConfigError, load_config, save_config
from jobs.joint_train import JointConfig, run_stage, stage_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs/joint/tiny.yaml"


def joint_config(tmp_path: Path, *overrides: str) -> JointConfig:
    return load_config(JointConfig, TINY, [f"out_dir={tmp_path / 'pipe'}", *overrides]).absolute()


def test_shipped_configs_load_and_name_existing_stage_configs():
    for path in sorted((REPO / "configs/joint").glob("*.yaml")):
        cfg = load_config(JointConfig, path)
        for stage in ("sign2gloss", "gloss2text", "sign2text"):
            assert (REPO / getattr(cfg, stage).config).exists(), (path, stage)
        for f in (cfg.corpus.synthesize, cfg.corpus.preprocess):
            assert f is None or (REPO / f).exists(), (path, f)


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="corpus.synthesize needs corpus.root"):
        load_config(JointConfig, TINY, ["corpus.root=null"])
    with pytest.raises(ConfigError, match="nope"):
        load_config(JointConfig, TINY, ["sign2text.nope=1"])


def test_relative_paths_go_under_the_storage_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNBRIDGE_STORAGE", str(tmp_path / "store"))
    cfg = load_config(JointConfig, TINY).absolute()
    assert cfg.out_dir == str(tmp_path / "store/outputs/joint_tiny")
    assert cfg.corpus.shards == str(tmp_path / "store/outputs/joint_tiny/shards")
    assert cfg.corpus.root == str(tmp_path / "store/outputs/joint_tiny/corpus")
    absolute = load_config(JointConfig, TINY, [f"corpus.shards={tmp_path / 'elsewhere'}"]).absolute()
    assert absolute.corpus.shards == str(tmp_path / "elsewhere")


def test_stage_config_is_the_file_then_its_overrides_then_the_pipeline(tmp_path):
    cfg = joint_config(tmp_path, "sign2gloss.overrides=[train.epochs=7,out_dir=/ignored,name=mine]")
    s2g = stage_config(cfg, "sign2gloss", [f"data.shards={tmp_path / 'sh'}"])
    assert s2g.train.epochs == 7 and s2g.name == "mine"  # the stage's overrides over its file
    assert s2g.out_dir == str(tmp_path / "pipe/sign2gloss")  # the pipeline's out_dir wins
    assert s2g.data.shards == str(tmp_path / "sh") and s2g.run_dir == tmp_path / "pipe/sign2gloss/mine"
    s2t = stage_config(cfg, "sign2text", ["model.sign2gloss=a/b", "model.gloss2text=/c/d"])
    assert s2t.model.sign2gloss == str(Path("a/b").resolve()) and s2t.model.gloss2text == "/c/d"
    assert s2t.train.epochs == load_config(type(s2t), REPO / cfg.sign2text.config).train.epochs


def _fake_recipes(monkeypatch, calls: list):
    """jobs.joint_train.recipe with each stage's real config schema but a `run` that records the call
    and writes a finished run (summary with wall_s, config.yaml) as a recipe does."""
    import jobs.joint_train as joint

    real = joint.recipe

    def fake(stage):
        schema, _, absolute_paths = real(stage)

        def run(cfg):
            calls.append(stage)
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, cfg.run_dir / "config.yaml")
            summary = {"run_dir": str(cfg.run_dir), "best_checkpoint": str(cfg.run_dir / "checkpoint_000001"), "wall_s": 1.0}
            (cfg.run_dir / "best_checkpoint.json").write_text(json.dumps(summary))
            return summary

        return schema, run, absolute_paths

    monkeypatch.setattr(joint, "recipe", fake)


def test_a_stage_is_trained_then_skipped_retrained_on_a_new_config_or_given(tmp_path, monkeypatch):
    calls = []
    _fake_recipes(monkeypatch, calls)
    cfg = joint_config(tmp_path)
    first = run_stage(cfg, "gloss2text", [])
    assert first["status"] == "trained" and calls == ["gloss2text"]
    again = run_stage(cfg, "gloss2text", [])
    assert again["status"] == "skipped" and again["run_dir"] == first["run_dir"] and calls == ["gloss2text"]
    # a run saved before a key with a default existed is the same run; one with a key unknown now is not
    saved = Path(first["run_dir"]) / "config.yaml"
    older = yaml.safe_load(saved.read_text())
    assert older.pop("final_eval") is True
    saved.write_text(yaml.safe_dump(older))
    assert run_stage(cfg, "gloss2text", [])["status"] == "skipped" and calls == ["gloss2text"]
    saved.write_text(yaml.safe_dump({**older, "retired_key": 1}))
    assert run_stage(cfg, "gloss2text", [])["status"] == "trained" and calls == ["gloss2text"] * 2
    # an interrupted run (no wall_s in its summary) is handed to the recipe, which resumes it
    summary_file = Path(first["run_dir"]) / "best_checkpoint.json"
    summary_file.write_text(json.dumps({"run_dir": first["run_dir"]}))
    assert run_stage(cfg, "gloss2text", [])["status"] == "trained" and calls == ["gloss2text"] * 3
    changed = joint_config(tmp_path, "gloss2text.overrides=[train.epochs=3]")
    assert run_stage(changed, "gloss2text", [])["status"] == "trained" and calls == ["gloss2text"] * 4
    given = joint_config(tmp_path, f"gloss2text.checkpoint={tmp_path / 'mine'}")
    assert run_stage(given, "gloss2text", []) == {"run_dir": str(tmp_path / "mine"), "status": "given", "seconds": 0.0}
    assert calls == ["gloss2text"] * 4
