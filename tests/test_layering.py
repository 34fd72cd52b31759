"""Imports go one way (docs/DEVELOPING.md): common <- metrics, pipelines, models <- training <- jobs;
a job never imports another job script, except the orchestrators (ORCHESTRATORS: the sweep and the
progressive pipeline), which run recipe jobs' `run(cfg)` and are imported by none; bench/ uses
public names only. Checked on the parsed source of
every module, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "metrics", "pipelines", "models", "training", "jobs")
# what each package may import from the project (besides itself)
ALLOWED = {
    "common": set(),
    "metrics": {"common"},
    "pipelines": {"common", "metrics"},
    "models": {"common", "pipelines"},
    "training": {"common", "metrics", "pipelines", "models"},
    "jobs": {"common", "metrics", "pipelines", "models", "training"},
}
ORCHESTRATORS = {"jobs/sweep.py", "jobs/joint_train.py"}


def imported(source: str) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every absolute import in `source`; names empty for `import x`."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return out


def violations(path: str, source: str) -> list[str]:
    """The layering rules broken by one file, given as `<folder>/<file>.py` relative to the repo."""
    folder = path.split("/")[0]
    found = []
    for line, module, names in imported(source):
        top = module.split(".")[0]
        where = f"{path}:{line}: imports {module}"
        if folder in ALLOWED and top in PACKAGES and top != folder and top not in ALLOWED[folder]:
            found.append(f"{where} ({folder}/ may import {sorted(ALLOWED[folder]) or 'no project package'})")
        if folder == "jobs" and top == "jobs" and (path in ORCHESTRATORS or module in {f"jobs.{Path(o).stem}" for o in ORCHESTRATORS}):
            if module in {f"jobs.{Path(o).stem}" for o in ORCHESTRATORS}:
                found.append(f"{where} (nothing imports an orchestrator)")
        elif folder == "jobs" and top == "jobs":
            found.append(f"{where} (a job never imports another job script; move shared code to training/ or pipelines/)")
        if folder == "bench" and top in PACKAGES:
            private = [n for n in names if n.startswith("_")] + [p for p in module.split(".") if p.startswith("_")]
            if private:
                found.append(f"{where} private name(s) {private} (bench/ uses public names only)")
    return found


def test_the_checker_finds_each_kind_of_violation():
    assert violations("pipelines/x.py", "from jobs.config import StrictModel\n") == [
        "pipelines/x.py:1: imports jobs.config (pipelines/ may import ['common', 'metrics'])"]
    assert violations("models/x.py", "def f():\n    import training.state\n") == [
        "models/x.py:2: imports training.state (models/ may import ['common', 'pipelines'])"]
    assert len(violations("jobs/a.py", "from jobs.train_recognition import run\n")) == 1
    assert violations("jobs/sweep.py", "from jobs.train_recognition import run\n") == []  # an orchestrator
    assert violations("jobs/sweep.py", "from jobs.joint_train import run\n") == [
        "jobs/sweep.py:1: imports jobs.joint_train (nothing imports an orchestrator)"]
    assert len(violations("jobs/train_islr.py", "from jobs.sweep import run\n")) == 1
    assert violations("bench/b.py", "from jobs.train_translation import _load_split, build_model\n") == [
        "bench/b.py:1: imports jobs.train_translation private name(s) ['_load_split'] (bench/ uses public names only)"]
    assert violations("common/c.py", "import numpy\nfrom pipelines import shards\n")[0].startswith("common/c.py:2:")
    assert violations("training/t.py", "from models.s3d import S3D\nfrom .state import x\nimport ray.train\n") == []


@pytest.mark.parametrize("folder", [*PACKAGES, "bench"])
def test_repository_imports_go_one_way(folder):
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, f"{folder}/ has no Python files"
    problems = [v for f in files for v in violations(str(f.relative_to(REPO)), f.read_text(encoding="utf-8"))]
    assert problems == []


def test_no_job_function_is_longer_than_80_lines():
    long = []
    for path in sorted((REPO / "jobs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
