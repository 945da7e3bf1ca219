"""benchmark.sh and its report step: known run folders in, known tables out; the quick matrix end to end."""

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, read_text, write_json

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import report  # noqa: E402


def make_run(out, algo, env, seed, returns, costs, sps, cumulative_cost, train_seconds, num_envs=8, evals=None):
    run_dir = os.path.join(out, "runs", f"{env}__{algo}__{seed}__1700000000")
    os.makedirs(run_dir)
    config = {"exp_name": algo, "env_id": env, "seed": seed, "cost_limit": 25.0, "num_envs": num_envs}
    write_json(os.path.join(run_dir, "config.json"), config)
    write_json(os.path.join(run_dir, "summary.json"), {"train_seconds": train_seconds, **(evals or {})})
    with open(os.path.join(run_dir, "progress.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["global_step", "episodic_return", "episodic_cost", "episodic_length", "sps", "cumulative_cost"]
        )
        for i, (r, c) in enumerate(zip(returns, costs)):
            step = 1000 * (i + 1)
            writer.writerow([step, r, c, 1000, sps, cumulative_cost * step / (1000 * len(returns))])


def section(text, title):
    """The text under `## title` (the results table: title None), up to the next section."""
    if title is None:
        return text.split("\n## ")[0]
    return text.split(f"\n## {title}\n")[1].split("\n## ")[0]


def table_row(text, algo, env, title=None):
    """The cells of the row of (algo, env) in the table under `## title` (None: the results table)."""
    rows = [line for line in section(text, title).splitlines() if line.startswith(f"| {algo} | {env} |")]
    assert len(rows) == 1, text
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_report_on_hand_made_runs(tmp_path):
    out = str(tmp_path)
    env = "SafetyPointGoal1-v0"
    # Final = mean of the last 5 rows: seed 1 -> return 10, cost 20; seed 2 -> return 12, cost 30.
    evals = lambda r, c: {
        "eval_stochastic_return": r,
        "eval_stochastic_cost": c,
        "eval_deterministic_return": 2 * r,
        "eval_deterministic_cost": 3 * c,
    }
    make_run(
        out,
        "ppo",
        env,
        1,
        [0, 0, 10, 10, 10, 10, 10],
        [99, 99, 20, 20, 20, 20, 20],
        500,
        700.0,
        100.0,
        evals=evals(4.0, 10.0),
    )
    make_run(
        out, "ppo", env, 2, [5, 12, 12, 12, 12, 12], [0, 30, 30, 30, 30, 30], 700, 1200.0, 140.0, evals=evals(6.0, 20.0)
    )
    make_run(out, "trpo", env, 1, [1, 2], [3, 4], 100, 7.0, 10.0, evals={"eval_return": 7.0, "eval_cost": 8.0})
    make_run(out, "cvpo", env, 1, [float("nan"), 1, 2, 3], [float("nan"), 4, 5, 6], 100, 40.0, 50.0, num_envs=4)
    os.makedirs(os.path.join(out, "throughput"))
    with open(os.path.join(out, "throughput", f"{env}__8.json"), "w") as f:
        f.write(json.dumps({"env_id": env, "num_envs": 8, "sps": 1200.0}) + "\n")
    path = report.write_report(out, failed=["trpo__SafetyPointGoal1-v0__1: exit 1"])
    text = read_text(path)

    algo_, env_, seeds, steps, ret, cost, rate, sps, wall, published = table_row(text, "ppo", env)
    assert (seeds, steps) == ("2", "6,000/7,000")
    assert ret == "11.00 ± 1.00" and cost == "25.00 ± 5.00"
    assert rate == "0.1500 ± 0.0500"  # 700 / 7000 and 1200 / 6000
    assert sps == "600 ± 100" and wall == "120 ± 20"
    assert published == "25.44 / 55.72 (OmniSafe, 1e7 steps)"
    # Both evaluations, mean ± std over seeds; a run without them (cvpo here) shows n/a.
    assert table_row(text, "ppo", env, "Final evaluation")[3:] == [
        "5.00 ± 1.00",
        "15.00 ± 5.00",
        "10.00 ± 2.00",
        "45.00 ± 15.00",
    ]
    assert table_row(text, "cvpo", env, "Final evaluation")[3:] == ["n/a"] * 4
    # Older runs evaluated the mean action only, under eval_return / eval_cost: they fill the deterministic columns.
    assert table_row(text, "trpo", env, "Final evaluation")[3:] == ["n/a", "n/a", "7.00 ± 0.00", "8.00 ± 0.00"]
    # Per run: the last 10% of steps (seed 1: the row at 7000 > 6300 only), cumulative cost, rows above d = 25.
    per_run = [line for line in section(text, "Per run").splitlines() if line.startswith("| ppo |")]
    assert per_run == [
        f"| ppo | {env} | 1 | 7,000 | 10.00 | 20.00 | 700 | 2 / 7 |",
        f"| ppo | {env} | 2 | 6,000 | 12.00 | 30.00 | 1,200 | 5 / 6 |",
    ]
    # NaN rows (before the first episode ends) are skipped: final over the finite ones among the last 5.
    cvpo_row = table_row(text, "cvpo", env)
    assert cvpo_row[4] == "2.00 ± 0.00" and cvpo_row[5] == "5.00 ± 0.00" and cvpo_row[9] == ""
    # Throughput: ppo ran with 8 envs, which was measured raw; cvpo's 4 envs were not, so it has no ratio row.
    ratio_rows = [line for line in text.split("## Throughput")[1].splitlines() if line.startswith("| ppo |")]
    assert ratio_rows == [f"| ppo | {env} | 8 | 600 | 1200 | 0.50 |"]
    assert "| cvpo |" not in text.split("## Throughput")[1]
    assert "- trpo__SafetyPointGoal1-v0__1: exit 1" in text
    assert os.path.getsize(os.path.join(out, "curves.png")) > 10_000


def run_benchmark(tmp_path, *args, timeout=900):
    return subprocess.run(
        ["bash", os.path.join(ROOT, "benchmark.sh"), "--out", str(tmp_path / "bench"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHON": sys.executable, "WANDB_MODE": "offline"},
    )


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path):
    result = run_benchmark(tmp_path, "--quick", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "bench"
    assert read_text(out / "failed.txt") == ""
    text = read_text(out / "results.md")
    env = "SafetyHalfCheetahVelocity-v1"
    for algo in ("ppo", "trpo", "ppo_lagrangian", "cppo", "dyna_cppo", "cvpo"):
        row = table_row(text, algo, env)
        assert row[2] == "2" and row[3] == "2,000" and row[4] != "n/a" and row[5] != "n/a", row
        assert f"| {algo} | {env} | 2 |" in text.split("## Throughput")[1]
    assert os.path.getsize(out / "curves.png") > 10_000


@pytest.mark.slow
def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    result = run_benchmark(
        tmp_path,
        "--quick",
        "--algos",
        "ppo",
        "--envs",
        "SafetyNoSuchEnv-v0,SafetyHalfCheetahVelocity-v1",
        "--seeds",
        "1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    failed = read_text(tmp_path / "bench" / "failed.txt")
    assert "ppo__SafetyNoSuchEnv-v0__1: exit 1" in failed
    text = read_text(tmp_path / "bench" / "results.md")
    assert table_row(text, "ppo", "SafetyHalfCheetahVelocity-v1")[2] == "1"
    assert "## Failed runs" in text and "SafetyNoSuchEnv-v0" in text.split("## Failed runs")[1]


def test_slurm_mode_writes_one_array_task_per_run(tmp_path):
    result = run_benchmark(
        tmp_path,
        "--slurm",
        "--algos",
        "ppo,cvpo",
        "--envs",
        "SafetyPointGoal1-v0",
        "--seeds",
        "1,2,3",
        "--total-timesteps",
        "SafetyPointGoal1-v0=300000",
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "bench"
    tasks = read_text(out / "tasks.txt").splitlines()
    assert len(tasks) == 6 and all("--total-timesteps 300000" in t for t in tasks)
    assert sum("cvpo.py' --env-id SafetyPointGoal1-v0 --seed 3" in t for t in tasks) == 1
    script = read_text(out / "benchmark.sbatch")
    assert "#SBATCH --array=0-5" in script
    assert subprocess.run(["bash", "-n", str(out / "benchmark.sbatch")]).returncode == 0
    assert not os.path.exists(out / "runs")  # nothing ran locally


def test_bad_options_fail_fast(tmp_path):
    for args, words in (
        (["--algos", "nosuch"], "no script nosuch.py"),
        (["--workers", "0"], "--workers"),
        (["--frobnicate"], "unknown option"),
    ):
        result = run_benchmark(tmp_path, *args, timeout=60)
        assert result.returncode == 2 and words in result.stderr, result.stderr
