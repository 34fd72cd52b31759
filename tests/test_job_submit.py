"""A recipe submitted with `ray job submit --working-dir` to a real cluster started with `ray start
--head`: the job succeeds and leaves its run (summary, metrics, checkpoint, dev evaluation).

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
from _translation_helpers import write_tiny_corpus

from training.ray_cluster import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's `ray` and `python`: the job runs the same interpreter
# The submitted command, relative to the working dir (switch to jobs/joint_train.py when it exists).
ENTRYPOINT = "python jobs/train_translation.py --config configs/translation/tiny.yaml"
# Kept out of the upload (Ray also skips what .gitignore lists): runs, environments, git history.
EXCLUDES = [".git", ".venv", "outputs", "**/__pycache__", ".pytest_cache"]
TIMEOUT_S = 420


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


def test_ray_job_submit_runs_a_recipe_on_a_ray_start_cluster(tmp_path, monkeypatch):
    from ray.job_submission import JobStatus, JobSubmissionClient

    files = write_tiny_corpus(tmp_path / "data")
    out_dir = tmp_path / "runs"
    ray_tmp = tempfile.mkdtemp(prefix="sbjob", dir="/tmp")  # short: Unix socket paths <= 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    for key in ("RAY_AUTH_MODE", "RAY_TMPDIR"):
        monkeypatch.setenv(key, env[key])
    dashboard_port = free_port()
    address = f"http://127.0.0.1:{dashboard_port}"
    head = _start_head(env, dashboard_port, tmp_path / "ray_start.log")
    try:
        client = _wait_until_up(lambda: JobSubmissionClient(address), head, tmp_path / "ray_start.log")
        submission_id = f"signbridge_test_{os.getpid()}"
        overrides = [f"out_dir={out_dir}", "name=submitted", f"data.corpus.files.train={files['train']}",
                     f"data.corpus.files.dev={files['dev']}", "train.epochs=1", "data.train_limit=null",
                     "data.dev_limit=8"]
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

        # the recipe's summary (its last stdout line) and the run it describes
        summary = json.loads(next(line for line in reversed(logs.splitlines()) if line.startswith("{")))
        run_dir = out_dir / "submitted"
        assert summary["run_dir"] == str(run_dir) and summary["epochs_run"] == [1]
        assert json.loads((run_dir / "best_checkpoint.json").read_text())["best_checkpoint"] == summary["best_checkpoint"]
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [h["epoch"] for h in history] == [1] and "dev_bleu4" in history[0]
        ckpt = Path(summary["best_checkpoint"])
        assert ckpt.parent == run_dir and (ckpt / "model" / "weights.pt").stat().st_size > 0
        scores = json.loads((run_dir / "eval_dev" / "scores.json").read_text())
        assert scores["sentences"] == 8 and set(scores["scores"]) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge"}
    finally:
        _stop_head(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    with pytest.raises(ProcessLookupError):
        os.killpg(head.pid, 0)  # nothing of the cluster is left running
