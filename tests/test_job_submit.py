"""The progressive pipeline (jobs/joint_train.py, tiny config) submitted with `ray job submit
--working-dir` to a real cluster started with `ray start --head`: the job succeeds and leaves the
corpus, shards, the three stages' runs and the results table; submitted again, it trains nothing
and gives the same table.

The cluster runs in its own process group (`ray start --block`) with its own temp dir and ports, and
is stopped by signalling that group: `ray stop` would stop every Ray instance of the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from training.ray_cluster import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's `ray` and `python`: the job runs the same interpreter
# The submitted command, relative to the working dir.
ENTRYPOINT = "python jobs/joint_train.py --config configs/joint/tiny.yaml"
# Kept out of the upload (Ray also skips what .gitignore lists): runs, environments, git history.
EXCLUDES = [".git", ".venv", "outputs", "**/__pycache__", ".pytest_cache"]
TIMEOUT_S = 900


def _ray(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _start_head(env: dict, dashboard_port: int, log: Path) -> subprocess.Popen:
    ports = {f"--{name}": str(free_port()) for name in (
        "port", "node-manager-port", "object-manager-port", "ray-client-server-port", "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")}
    args = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=2", "--disable-usage-stats",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
            f"--object-store-memory={200 * 2**20}", *[f"{k}={v}" for k, v in ports.items()]]
    with log.open("w") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop_head(head: subprocess.Popen) -> None:
    """SIGTERM to the cluster's process group (raylet, GCS, dashboard, workers), SIGKILL to what remains."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait_s
        while time.time() < deadline:
            head.poll()  # reap `ray start` itself
            try:
                os.killpg(head.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


def _wait_until_up(client_factory, head: subprocess.Popen, log: Path, timeout_s: float = 90):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start exited with {head.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return client_factory()
        except Exception:
            time.sleep(1)
    pytest.fail(f"the dashboard did not come up in {timeout_s} s:\n{log.read_text()[-3000:]}")


def _submit(client, address: str, submission_id: str, overrides: list[str], env: dict) -> str:
    """Submit the pipeline, wait for it to succeed; returns its log."""
    from ray.job_submission import JobStatus

    runtime_env = json.dumps({"excludes": EXCLUDES, "env_vars": {"HF_HUB_OFFLINE": "1"}})
    submitted = _ray("job", "submit", "--address", address, "--submission-id", submission_id, "--no-wait",
                     "--working-dir", str(REPO), "--runtime-env-json", runtime_env, "--",
                     *ENTRYPOINT.split(), *overrides, env=env)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    deadline = time.time() + TIMEOUT_S
    while (status := client.get_job_status(submission_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.time() < deadline, f"job still {status} after {TIMEOUT_S} s:\n{client.get_job_logs(submission_id)[-3000:]}"
        time.sleep(2)
    logs = _ray("job", "logs", "--address", address, submission_id, env=env).stdout
    assert status == JobStatus.SUCCEEDED, logs[-5000:]
    shown = _ray("job", "status", "--address", address, "--log-color", "false", submission_id, env=env)
    assert shown.returncode == 0 and f"Job '{submission_id}' succeeded" in shown.stdout, shown.stdout
    info = client.get_job_info(submission_id)
    assert info.entrypoint.startswith(ENTRYPOINT) and info.runtime_env["excludes"] == EXCLUDES
    return logs


def test_ray_job_submit_runs_the_pipeline_on_a_ray_start_cluster(tmp_path, monkeypatch):
    from ray.job_submission import JobSubmissionClient

    out_dir = tmp_path / "pipeline"
    ray_tmp = tempfile.mkdtemp(prefix="sbjob", dir="/tmp")  # short: Unix socket paths <= 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    env.pop("SIGNBRIDGE_STORAGE", None)
    for key in ("RAY_AUTH_MODE", "RAY_TMPDIR"):
        monkeypatch.setenv(key, env[key])
    dashboard_port = free_port()
    address = f"http://127.0.0.1:{dashboard_port}"
    head = _start_head(env, dashboard_port, tmp_path / "ray_start.log")
    overrides = [f"out_dir={out_dir}", f"corpus.root={tmp_path / 'corpus'}", f"corpus.shards={tmp_path / 'shards'}"]
    try:
        client = _wait_until_up(lambda: JobSubmissionClient(address), head, tmp_path / "ray_start.log")
        logs = _submit(client, address, f"signbridge_test_{os.getpid()}", overrides, env)
        summary = json.loads((out_dir / "pipeline.json").read_text())

        assert (tmp_path / "corpus/synthetic.json").exists() and (tmp_path / "shards/synthetic-sgsl-a").is_dir()
        assert {s: r["status"] for s, r in summary["stages"].items()} == {s: "trained" for s in ("sign2gloss", "gloss2text", "sign2text")}
        for stage, run in summary["stages"].items():
            run_dir = Path(run["run_dir"])
            assert run_dir.parent == out_dir / stage, (stage, run_dir)
            ckpt = Path(json.loads((run_dir / "best_checkpoint.json").read_text())["best_checkpoint"])
            assert (ckpt / "model" / "weights.pt").stat().st_size > 0 and list(run_dir.glob("*.png")), stage
        assert "| Sign2Gloss2Text |" in logs and "| Sign2Text |" in logs  # the job prints the table
        assert {Path(f).name for f in summary["files"]} == {"results.md", "results.json", "sample_dev.png", "learning_curve.png"}
        rows = {r["task"]: r["dev"] for r in summary["results"]["rows"]}
        assert 0 <= rows["Sign2Gloss"]["wer"] and rows["Sign2Gloss"]["bleu4"] is None
        for task in ("Gloss2Text", "Sign2Gloss2Text", "Sign2Text"):
            assert all(0 <= rows[task][m] <= 100 for m in ("rouge", "bleu1", "bleu2", "bleu3", "bleu4")), (task, rows[task])
        table = (out_dir / "results.md").read_text().splitlines()
        assert [line.split(" | ")[0] for line in table[2:]] == ["| Sign2Gloss", "| Gloss2Text", "| Sign2Gloss2Text", "| Sign2Text"]
        scores = json.loads((out_dir / "evaluation/dev/sign2text/scores.json").read_text())
        assert scores["sentences"] == 4 and f"{scores['scores']['bleu4']:.2f}" in table[5]

        _submit(client, address, f"signbridge_test_{os.getpid()}_again", overrides, env)
        again = json.loads((out_dir / "pipeline.json").read_text())
        assert {r["status"] for r in again["stages"].values()} == {"skipped"}
        assert again["results"] == summary["results"]  # the same checkpoints, evaluated the same way
    finally:
        _stop_head(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    with pytest.raises(ProcessLookupError):
        os.killpg(head.pid, 0)  # nothing of the cluster is left running
