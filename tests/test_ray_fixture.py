def test_ray_local_runs_tasks(ray_local):
    @ray_local.remote
    def square(x: int) -> int:
        return x * x

    assert ray_local.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]


def test_training_jobs_start_local_workers_with_their_malloc_and_thread_settings(tmp_path):
    """init_ray(job_priority=True) starts a private local Ray whose workers see the settings."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import json, os, ray\n"
        "from training.ray_cluster import TRAINING_MALLOC_ENV, init_ray\n"
        "init_ray(num_cpus=1, job_priority=True)\n"
        "keys = [*TRAINING_MALLOC_ENV, 'OMP_WAIT_POLICY', 'RAY_worker_niceness']\n"
        "env = ray.get(ray.remote(lambda: {k: os.environ.get(k) for k in keys}).remote())\n"
        "print(json.dumps({'worker': env, 'expected': TRAINING_MALLOC_ENV, 'nice': ray.get(ray.remote(lambda: os.nice(0)).remote())}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {k: result["worker"][k] for k in result["expected"]} == result["expected"]
    assert result["worker"]["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20)
    assert result["worker"]["OMP_WAIT_POLICY"] == "PASSIVE" and result["nice"] == os.nice(0)
