"""benchmark.sh and its report step: known run folders in, known tables out; the quick matrix end to end."""

import csv
import dataclasses
import glob
import json
import math
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT, load_script, read_text, write_json

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import env_sps  # noqa: E402
import report  # noqa: E402
import resume  # noqa: E402

COMMIT_A, COMMIT_B = "a" * 7 + "1" * 33, "b" * 7 + "2" * 33  # two code_commits (full 40-character shas)


def make_run(
    out,
    algo,
    env,
    seed,
    returns,
    costs,
    sps,
    cumulative_cost,
    train_seconds,
    num_envs=8,
    evals=None,
    cost_limit=25.0,
    code_commit=COMMIT_A,
    without=(),
    total_timesteps=10_000,
    time=1700000000,
    finished=True,
    row_limits=None,
):
    """A run folder (ENV__ALGO__SEED__TIME) with one progress row per (return, cost), 1000 steps apart, and a
    summary.json unless not `finished`; `without` drops config.json keys (an older run without code_commit, a
    script without cost_limit); `row_limits`: a cost_limit column in progress.csv, one value per row."""
    run_dir = os.path.join(out, "runs", f"{env}__{algo}__{seed}__{time}")
    os.makedirs(run_dir)
    config = {
        "exp_name": algo,
        "env_id": env,
        "seed": seed,
        "total_timesteps": total_timesteps,
        "cost_limit": cost_limit,
        "num_envs": num_envs,
        "git_commit": COMMIT_B,
        "code_commit": code_commit,
    }
    write_json(os.path.join(run_dir, "config.json"), {k: v for k, v in config.items() if k not in without})
    if finished:
        write_json(os.path.join(run_dir, "summary.json"), {"train_seconds": train_seconds, **(evals or {})})
    with open(os.path.join(run_dir, "progress.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        columns = ["global_step", "episodic_return", "episodic_cost", "episodic_length", "sps", "cumulative_cost"]
        writer.writerow(columns + (["cost_limit"] if row_limits else []))
        for i, (r, c) in enumerate(zip(returns, costs)):
            step = 1000 * (i + 1)
            row = [step, r, c, 1000, sps, cumulative_cost * step / (1000 * len(returns))]
            writer.writerow(row + ([row_limits[i]] if row_limits else []))
    return run_dir


def notes_under_table(text):
    """The non-empty lines after the results table, up to the next section."""
    lines = section(text, None).strip().splitlines()
    last_row = max(i for i, line in enumerate(lines) if line.startswith("|"))
    return [line for line in lines[last_row + 1 :] if line.strip()]


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


def test_last10_se_reads_the_newest_finished_run_of_each_seed(tmp_path):
    """20 rows 1000 steps apart: the last 10% are the rows at 19k and 20k steps, costs 10 and 30, so the cost is 20
    and its standard error 14.14 / sqrt(2) = 10. An older finished run and a newer unfinished one are not read."""
    env, returns = "SafetyPointGoal1-v0", [0.0] * 20
    make_run(tmp_path, "ppo", env, 1, returns, [0.0] * 18 + [10.0, 30.0], 100, 0, 1, total_timesteps=20_000)
    make_run(tmp_path, "ppo", env, 1, returns, [99.0] * 20, 100, 0, 1, total_timesteps=20_000, time=1600000000)
    make_run(
        tmp_path,
        "ppo",
        env,
        1,
        returns,
        [77.0] * 20,
        100,
        0,
        1,
        total_timesteps=20_000,
        time=1800000000,
        finished=False,
    )
    script = os.path.join(ROOT, "benchmarks", "last10_se.py")
    out = subprocess.run([sys.executable, script, "--out", str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"{env:24s} {'ppo':15s} seed 1:   2 rows, last-10% cost   20.0, SE  10.0"]


def test_report_on_hand_made_runs(tmp_path):
    out = str(tmp_path)
    env = "SafetyPointGoal1-v0"
    # Final = mean over the rows of the last 10% of steps: seed 1 -> return 10, cost 20 (the row at 7000 > 6300
    # only); seed 2 -> return 12, cost 30 (6000 > 5400).
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

    algo_, env_, seeds, steps, ret, cost, cumulative, above, rate, sps, wall, code, published = table_row(
        text, "ppo", env
    )
    assert (seeds, steps) == ("2", "6,000/7,000")
    assert ret == "11.00 ± 1.00" and cost == "25.00 ± 5.00"
    assert cumulative == "950 ± 250"  # 700 and 1200
    assert above == "3.5 ± 1.5 of 6–7"  # seed 1: the two rows at 99; seed 2: the five at 30 (limit 25)
    assert rate == "0.1500 ± 0.0500"  # 700 / 7000 and 1200 / 6000
    assert sps == "600 ± 100" and wall == "120 ± 20"
    assert code == "aaaaaaa"  # one commit, no mark
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
        f"| ppo | {env} | 1 | 7,000 | 10.00 | 20.00 | 700 | 2 / 7 | aaaaaaa |",
        f"| ppo | {env} | 2 | 6,000 | 12.00 | 30.00 | 1,200 | 5 / 6 | aaaaaaa |",
    ]
    # cvpo: the last 10% of 4000 steps is the row at 4000 (return 3, cost 6); its NaN row is counted nowhere.
    cvpo_row = table_row(text, "cvpo", env)
    assert (
        cvpo_row[4] == "3.00 ± 0.00"
        and cvpo_row[5] == "6.00 ± 0.00"
        and cvpo_row[-1].startswith("about 23 / about 25 (FSRL")
    )
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


def test_report_marks_cells_whose_runs_mix_code(tmp_path):
    out = str(tmp_path)
    env = "SafetyPointGoal1-v0"
    run = lambda algo, seed, **kw: make_run(out, algo, env, seed, [1, 2], [3, 4], 100, 7.0, 10.0, **kw)
    run("ppo", 1)
    run("ppo", 2)  # both COMMIT_A: one version, no mark
    run("trpo", 1)
    run("trpo", 2, code_commit=COMMIT_B)
    run("trpo", 3, code_commit=COMMIT_B)
    run("cppo", 1, code_commit=COMMIT_A + "-dirty")  # one commit, but edited since
    run("cvpo", 1, code_commit=None)  # outside git
    run("dyna_cppo", 1, without=("code_commit",))  # a run from before config.json recorded it
    text = read_text(report.write_report(out))
    assert table_row(text, "ppo", env)[11] == "aaaaaaa"
    assert table_row(text, "trpo", env)[11] == f"aaaaaaa ×1, bbbbbbb ×2 {report.MARK}"
    assert table_row(text, "cppo", env)[11] == f"aaaaaaa-dirty ×1 {report.MARK}"
    assert table_row(text, "cvpo", env)[11] == f"none ×1 {report.MARK}"
    assert table_row(text, "dyna_cppo", env)[11] == f"unknown ×1 {report.MARK}"
    # The mark is explained once, in a line under the table; the per-run table says which run ran which code.
    notes = notes_under_table(text)
    assert notes[0].startswith("Code: the runs' `code_commit`") and f" {report.MARK}: " in notes[0]
    assert sum(report.MARK in line for line in notes) == 1
    assert report.BUDGET_MARK not in text  # every run had the same total_timesteps
    trpo_runs = [line.split("|")[-2].strip() for line in section(text, "Per run").splitlines() if "| trpo |" in line]
    assert trpo_runs == ["aaaaaaa", "bbbbbbb", "bbbbbbb"]


def test_updates_above_the_limit_count_rows_above_the_runs_own_cost_limit(tmp_path):
    out = str(tmp_path)
    env = "SafetyHalfCheetahVelocity-v1"
    nan = float("nan")
    # Limit 10 from config.json: 10.5 and 30 are above; 10 (equal) and the NaN row (no episode yet) are not.
    make_run(out, "cppo", env, 1, [0] * 6, [nan, 5, 10, 10.5, 30, 9], 100, 7.0, 10.0, cost_limit=10.0)
    make_run(out, "cppo", env, 2, [0] * 4, [11, 12, 13, 0], 100, 7.0, 10.0, cost_limit=10.0)
    # The same costs under limit 25: only 30 is above.
    make_run(out, "ppo", env, 1, [0] * 6, [nan, 5, 10, 10.5, 30, 9], 100, 7.0, 10.0, cost_limit=25.0)
    make_run(out, "trpo", env, 1, [0] * 2, [30, 30], 100, 7.0, 10.0, without=("cost_limit",))
    text = read_text(report.write_report(out))
    assert table_row(text, "cppo", env)[7] == "2.5 ± 0.5 of 4–6"
    assert table_row(text, "ppo", env)[7] == "1.0 ± 0.0 of 6"
    assert table_row(text, "trpo", env)[7] == "n/a"  # no limit recorded: no count, rather than a guessed one
    per_run = {tuple(c.strip() for c in line.split("|")[1:4:2]): line for line in section(text, "Per run").splitlines()}
    assert per_run[("cppo", "1")].split("|")[8].strip() == "2 / 6"
    assert per_run[("cppo", "2")].split("|")[8].strip() == "3 / 4"
    assert per_run[("trpo", "1")].split("|")[8].strip() == "n/a / 2"


def test_report_counts_only_finished_runs_and_lists_the_others(tmp_path, monkeypatch):
    out = str(tmp_path)
    env = "SafetyPointGoal1-v0"
    run = lambda algo, seed, returns, **kw: make_run(
        out, algo, env, seed, returns, [3] * len(returns), 100, 7.0, 10.0, **kw
    )
    run("ppo", 1, [1, 2])
    run("ppo", 2, [100, 100], finished=False)  # interrupted or still running: not averaged in
    run("trpo", 1, [50, 50], finished=False)  # a cell of unfinished runs only: no row at all
    moved = run("cppo", 1, [1, 2], finished=False)
    os.makedirs(os.path.join(out, "runs", ".interrupted"))
    os.rename(moved, os.path.join(out, "runs", ".interrupted", os.path.basename(moved)))  # set aside by resume.py
    plotted = []
    monkeypatch.setattr(report, "plot_curves", lambda runs, path: plotted.extend(runs))
    text = read_text(report.write_report(out))
    row = table_row(text, "ppo", env)
    assert row[2:5] == ["1", "2,000", "2.00 ± 0.00"]  # seed 1 only: its last 10% of steps is the row at 2000
    assert not any(line.startswith(("| trpo |", "| cppo |")) for line in text.splitlines())
    assert [(r["algo"], r["seed"]) for r in plotted] == [("ppo", 1)]  # the curves too
    assert notes_under_table(text)[-1] == (
        f"Not counted: 2 unfinished run folders (no summary.json: interrupted, or still running): "
        f"runs/{env}__ppo__2__1700000000, runs/{env}__trpo__1__1700000000."
    )
    assert f"{env}__cppo__" not in text  # hidden folders (runs/.interrupted, runs/.locks) are not read
    # Nothing finished at all: no table, but the unfinished folders are still listed.
    empty = str(tmp_path / "empty")
    make_run(empty, "ppo", env, 1, [1], [1], 100, 7.0, 10.0, finished=False)
    text = read_text(report.write_report(empty))
    assert "No finished runs found." in text and "Not counted: 1 unfinished run folder (" in text


def test_report_keeps_the_newest_finished_run_of_a_seed(tmp_path):
    out = str(tmp_path)
    env = "SafetyPointGoal1-v0"
    run = lambda algo, seed, value, **kw: make_run(out, algo, env, seed, [value] * 2, [value] * 2, 100, 7.0, 10.0, **kw)
    # ppo seed 1: an old run (COMMIT_A, another budget) and a newer one (COMMIT_B); times compare as numbers, not
    # as names ("999999999" sorts after "1700000000").
    run("ppo", 1, 5, time=999999999, total_timesteps=99_000)
    run("ppo", 1, 7, time=1700000000, code_commit=COMMIT_B)
    # trpo: seed 1 reran on COMMIT_B, seed 2 is still COMMIT_A: the kept runs mix commits.
    run("trpo", 1, 1, time=1700000000)
    run("trpo", 1, 3, time=1700000100, code_commit=COMMIT_B)
    run("trpo", 2, 5, time=1700000000)
    text = read_text(report.write_report(out))
    ppo = table_row(text, "ppo", env)
    assert ppo[2:6] == ["1", "2,000", "7.00 ± 0.00", "7.00 ± 0.00"] and ppo[11] == "bbbbbbb"  # no †, no ‡
    trpo = table_row(text, "trpo", env)
    assert trpo[2] == "2" and trpo[4] == "4.00 ± 1.00" and trpo[11] == f"aaaaaaa ×1, bbbbbbb ×1 {report.MARK}"
    assert notes_under_table(text)[-1] == (
        f"Left out: 2 older finished runs of an algo × env × seed that has a newer one (the newest is kept): "
        f"runs/{env}__ppo__1__999999999, runs/{env}__trpo__1__1700000000."
    )
    assert report.BUDGET_MARK not in text  # the other budget was left out with its run
    per_run = [line for line in section(text, "Per run").splitlines() if line.startswith(("| ppo |", "| trpo |"))]
    assert len(per_run) == 3


def test_report_marks_cells_whose_runs_mix_budgets(tmp_path):
    out = str(tmp_path)
    env = "SafetyPointGoal1-v0"
    make_run(out, "cppo", env, 1, [1, 1], [1, 1], 100, 7.0, 10.0, total_timesteps=2000)
    make_run(out, "cppo", env, 2, [1] * 4, [1] * 4, 100, 7.0, 10.0, total_timesteps=4000)
    make_run(out, "ppo", env, 1, [1, 1], [1, 1], 100, 7.0, 10.0, total_timesteps=2000)
    make_run(out, "ppo", env, 2, [1] * 3, [1] * 3, 100, 7.0, 10.0, total_timesteps=2000)  # stopped at 3,000
    text = read_text(report.write_report(out))
    assert table_row(text, "cppo", env)[3] == f"2,000/4,000 {report.BUDGET_MARK}"
    assert table_row(text, "ppo", env)[3] == "2,000/3,000"  # one budget: no mark
    explained = [line for line in notes_under_table(text) if report.BUDGET_MARK in line]
    assert (
        len(explained) == 1 and explained[0].startswith(f"{report.BUDGET_MARK}: ") and "total_timesteps" in explained[0]
    )


def test_updates_above_the_limit_use_each_rows_own_limit_when_logged(tmp_path):
    out = str(tmp_path)
    env = "SafetyHalfCheetahVelocity-v1"
    costs = [30, 30, 20, 20]
    # An annealed limit 40 -> 15 in progress.csv: only the last row (20 > 15) is above its own limit; the
    # config's 25 would count the first two instead. A NaN limit row is not counted.
    make_run(out, "cppo", env, 1, [0] * 4, costs, 100, 7.0, 10.0, cost_limit=25.0, row_limits=[40, 35, 25, 15])
    make_run(out, "dyna_cppo", env, 1, [0] * 4, costs, 100, 7.0, 10.0, row_limits=["nan", 10, 10, 10])
    make_run(out, "ppo", env, 1, [0] * 4, costs, 100, 7.0, 10.0, cost_limit=25.0)  # no column: the config's limit
    text = read_text(report.write_report(out))
    assert table_row(text, "cppo", env)[7] == "1.0 ± 0.0 of 4"
    assert table_row(text, "dyna_cppo", env)[7] == "3.0 ± 0.0 of 4"
    assert table_row(text, "ppo", env)[7] == "2.0 ± 0.0 of 4"
    intro = text.split("\n\n")[1]
    assert "`cost_limit` column" in intro and "cvpo" in intro and "`--log-every` intervals" in intro


def test_steady_sps_leaves_out_the_time_before_the_first_row():
    # 8000 steps logged at 40 s (a slow start-up), 24000 at 80 s: 16000 steps in the 40 s between the rows
    rows = [
        {"global_step": "8000", "sps": "200"},
        {"global_step": "16000", "sps": "1"},
        {"global_step": "24000", "sps": "300"},
    ]
    assert env_sps.steady_sps(rows) == pytest.approx(400.0)
    assert math.isnan(env_sps.steady_sps(rows[:1]))


def test_curves_are_a_trailing_mean_over_updates():
    assert report.smooth([1, 2, 3, 4, 5], 2).tolist() == [1.0, 1.5, 2.5, 3.5, 4.5]
    assert report.smooth([4, 0, 8], 1).tolist() == [4.0, 0.0, 8.0]


# Resume: benchmarks/resume.py, run as each line of tasks.txt runs it (in OUT), on a stand-in script that has the
# interface resume.py uses (Args, env_layout, code_version) and writes a finished run folder at once (or, with
# FAKE_WAIT_FOR set, an unfinished one that finishes once that file exists: a run that is going on).
RESUME = os.path.join(ROOT, "benchmarks", "resume.py")
FAKE_SCRIPT = """
import dataclasses, json, os, sys, time
from dataclasses import dataclass
from typing import Optional
import tyro


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    env_id: str = "SafetyPointGoal1-v0"
    seed: int = 1
    total_timesteps: int = 5000
    num_envs: Optional[int] = None
    cost_limit: float = 25.0
    eval_episodes: int = 10
    track: bool = False
    cuda: bool = False
    wandb_entity: Optional[str] = None


def env_layout(args):
    return dataclasses.replace(args, num_envs=2 if args.num_envs is None else args.num_envs)


def code_version(script=__file__):
    if BROKEN and __name__ != "__main__":  # imported by resume.py: fails; as the run itself: works
        raise RuntimeError("git is broken")
    return {"git_commit": None, "code_commit": CODE_COMMIT}


if __name__ == "__main__":
    args = env_layout(tyro.cli(Args))
    run_dir = os.path.join("runs", f"{args.env_id}__{args.exp_name}__{args.seed}__{time.time_ns()}")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({**dataclasses.asdict(args), **code_version()}, f)
    deadline = time.time() + 60
    while os.environ.get("FAKE_WAIT_FOR") and not os.path.exists(os.environ["FAKE_WAIT_FOR"]):
        assert time.time() < deadline, "nobody created FAKE_WAIT_FOR"
        time.sleep(0.05)
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump({}, f)
    print("trained", args.total_timesteps, "steps")
    print("to stderr", file=sys.stderr)
"""
NAME = "fake__SafetyPointGoal1-v0__1"  # what resume.py calls the run of fake.py --seed 1


def fake_script(tmp_path, code_commit=COMMIT_A, broken=False) -> str:
    path = str(tmp_path / "fake.py")
    with open(path, "w") as f:
        f.write(f"CODE_COMMIT = {code_commit!r}\nBROKEN = {broken!r}\n" + FAKE_SCRIPT)
    return path


def run_folder(out, name, finished=True, without=(), **config):
    """A hand-made run folder of fake.py: its config.json (defaults: what `fake.py --seed 1` writes, with
    COMMIT_A), `without` some fields (an older run)."""
    run_dir = os.path.join(out, "runs", name)
    os.makedirs(run_dir)
    defaults = {
        "exp_name": "fake",
        "env_id": "SafetyPointGoal1-v0",
        "seed": 1,
        "total_timesteps": 5000,
        "num_envs": 2,  # as env_layout fills it in
        "cost_limit": 25.0,
        "eval_episodes": 10,
        "track": False,
        "cuda": False,
        "wandb_entity": None,
        "git_commit": COMMIT_B,
        "code_commit": COMMIT_A,
    }
    config = {k: v for k, v in {**defaults, **config}.items() if k not in without}
    write_json(os.path.join(run_dir, "config.json"), config)
    with open(os.path.join(run_dir, "progress.csv"), "w") as f:
        f.write("global_step,episodic_return,episodic_cost\n1000,1,2\n")
    if finished:
        write_json(os.path.join(run_dir, "summary.json"), {"train_seconds": 1.0})
    return run_dir


def resume_command(script, *args, no_resume=False):
    return [sys.executable, RESUME, *(["--no-resume"] if no_resume else []), "--log", "logs/fake.log", script, *args]


def resume_task(out, script, *args, no_resume=False):
    """One task line's command: resume.py [--no-resume] --log logs/fake.log SCRIPT ARGS, in OUT."""
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    command = resume_command(script, *args, no_resume=no_resume)
    return subprocess.run(command, cwd=out, capture_output=True, text=True, timeout=120)


def run_names(out):
    """The run folders in OUT/runs (not the hidden .locks and .interrupted)."""
    return sorted(name for name in os.listdir(os.path.join(out, "runs")) if not name.startswith("."))


def test_resume_skips_a_run_that_finished_with_the_same_code(tmp_path):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    run_folder(out, "SafetyPointGoal1-v0__fake__1__100")
    run_folder(out, "SafetyPointGoal1-v0__fake__2__100", finished=False, seed=2)  # another seed: not this run's
    os.makedirs(os.path.join(out, "logs"))
    with open(os.path.join(out, "logs", "fake.log"), "w") as f:
        f.write("the finished run's output\n")
    # No --total-timesteps: the run gets fake.py's default, 5000, which is what the finished run had.
    result = resume_task(out, script, "--env-id", "SafetyPointGoal1-v0", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"skip {NAME}: finished in runs/SafetyPointGoal1-v0__fake__1__100 "
        "(5,000 steps, code aaaaaaa); --no-resume reruns it"
    ]
    assert run_names(out) == ["SafetyPointGoal1-v0__fake__1__100", "SafetyPointGoal1-v0__fake__2__100"]
    assert read_text(os.path.join(out, "logs", "fake.log")) == "the finished run's output\n"  # not truncated


@pytest.mark.parametrize(
    "config, args",
    [
        ({}, []),
        ({}, ["--num-envs", "2"]),  # what env_layout fills in when --num-envs is not given
        ({"track": True, "cuda": True, "wandb_entity": "me"}, []),  # fields that do not change results
        ({}, ["--track", "--wandb-entity", "me"]),
    ],
    ids=["same", "given-as-the-layout-default", "other-ignored-fields", "given-ignored-fields"],
)
def test_resume_key_is_every_field_but_those_that_do_not_change_results(tmp_path, config, args):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    run_folder(out, "SafetyPointGoal1-v0__fake__1__100", **config)
    result = resume_task(out, script, "--seed", "1", *args)
    assert result.returncode == 0 and result.stdout.startswith(f"skip {NAME}: finished in"), result.stdout
    assert run_names(out) == ["SafetyPointGoal1-v0__fake__1__100"]


@pytest.mark.parametrize(
    "config, args",
    [
        ({"code_commit": COMMIT_B}, []),  # the script changed since
        ({"code_commit": COMMIT_A + "-dirty"}, []),  # that run ran edits that were never committed
        ({"total_timesteps": 4000}, []),  # a different budget than the script's default
        ({}, ["--total-timesteps", "4000"]),  # a different budget than the finished run's (the default)
        ({"env_id": "SafetyCarGoal1-v0"}, []),
        ({"cost_limit": 10.0}, []),  # any other field that changes results
        ({}, ["--eval-episodes", "3"]),  # changes summary.json
        ({"num_envs": 4}, []),  # env_layout makes it 2 for this run
        ({}, ["--num-envs", "4"]),
        ({"without": ("eval_episodes",)}, []),  # an older config.json, from before the field existed
    ],
    ids=[
        "other-commit",
        "dirty",
        "other-default-budget",
        "other-given-budget",
        "other-env",
        "other-cost-limit",
        "other-eval-episodes",
        "other-default-num-envs",
        "other-given-num-envs",
        "field-missing",
    ],
)
def test_resume_reruns_when_the_code_or_the_config_differ(tmp_path, config, args):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    old = run_folder(out, "SafetyPointGoal1-v0__fake__1__100", **config)
    result = resume_task(out, script, "--seed", "1", *args)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr
    names = run_names(out)
    assert len(names) == 2 and os.path.basename(old) in names  # the old run stays; a new one ran
    steps = 4000 if "--total-timesteps" in args else 5000
    assert read_text(os.path.join(out, "logs", "fake.log")) == f"trained {steps} steps\nto stderr\n"


@pytest.mark.parametrize(
    "code_commit, said",
    [(COMMIT_A + "-dirty", "aaaaaaa-dirty (uncommitted edits)"), (None, "none (not in a git checkout)")],
    ids=["dirty", "outside-git"],
)
def test_resume_always_reruns_code_that_is_not_a_commit(tmp_path, code_commit, said):
    """A finished run with the very same key, code_commit included, is not reused when that is not a commit:
    two different edits of one commit both read abc1234-dirty."""
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path, code_commit=code_commit)
    old = run_folder(out, "SafetyPointGoal1-v0__fake__1__100", code_commit=code_commit)
    result = resume_task(out, script, "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{NAME}: code {said} is not a commit, so a finished run is never reused (1 in runs/ with this config); "
        "running it"
    ]
    names = run_names(out)
    assert len(names) == 2 and os.path.basename(old) in names
    assert read_text(os.path.join(out, "logs", "fake.log")) == "trained 5000 steps\nto stderr\n"


def test_resume_moves_an_interrupted_run_aside_and_starts_again(tmp_path):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    interrupted = run_folder(out, "SafetyPointGoal1-v0__fake__1__100", finished=False)
    other_code = run_folder(out, "SafetyPointGoal1-v0__fake__1__50", finished=False, code_commit=COMMIT_B)
    # The same folder name was set aside before: the new one gets a number, nothing is overwritten.
    os.makedirs(os.path.join(out, "runs", ".interrupted", "SafetyPointGoal1-v0__fake__1__100"))
    result = resume_task(out, script, "--seed", "1")
    assert result.returncode == 0, result.stderr
    moved = "runs/.interrupted/SafetyPointGoal1-v0__fake__1__100.1"
    assert result.stdout.splitlines() == [
        f"{NAME}: moved interrupted run runs/SafetyPointGoal1-v0__fake__1__100 (no summary.json) to {moved}; "
        "starting again"
    ]
    assert not os.path.exists(interrupted)
    assert os.path.exists(os.path.join(out, moved, "config.json"))  # kept, with its files
    assert os.path.exists(other_code)  # another key: left alone
    new = [name for name in run_names(out) if name != os.path.basename(other_code)]
    assert len(new) == 1 and os.path.exists(os.path.join(out, "runs", new[0], "summary.json"))
    # Run again: now it has finished, so it is skipped.
    again = resume_task(out, script, "--seed", "1")
    assert again.stdout.startswith(f"skip {NAME}: finished in runs/{new[0]} "), again.stdout


def wait_for_run_folder(out, process, timeout=60):
    """The run folder the process (a run that is going on) has made, once its config.json is there."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = glob.glob(os.path.join(out, "runs", "*", "config.json"))
        if found:
            return os.path.dirname(found[0])
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("the run made no folder")


def test_resume_leaves_a_run_that_is_going_on_elsewhere(tmp_path):
    """A second task of the same run while the first is still running (a second benchmark.sh on the same --out,
    a resubmitted Slurm array): the lock, taken by resume.py and held by the script it became, stops it; the
    running run's unfinished folder stays where it is. Once that run ends, the lock is free again."""
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    os.makedirs(os.path.join(out, "logs"))
    go = str(tmp_path / "go")
    first = subprocess.Popen(
        resume_command(script, "--seed", "1"),
        cwd=out,
        env={**os.environ, "FAKE_WAIT_FOR": go},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        running = wait_for_run_folder(out, first)  # fake.py itself now: resume.py has exec'd it
        lock = resume.lock_path("runs", resume.run_key(script, ["--seed", "1"]))
        assert lock.startswith(f"runs/.locks/{NAME}__") and lock.endswith(".lock")
        for no_resume in (False, True):  # --no-resume does not start it twice either
            second = resume_task(out, script, "--seed", "1", no_resume=no_resume)
            assert second.returncode == 0, second.stderr
            assert second.stdout.splitlines() == [f"{NAME}: running elsewhere (lock {lock}); not started"]
            assert run_names(out) == [os.path.basename(running)]  # not moved to .interrupted, no second run
            assert not os.path.exists(os.path.join(out, "runs", ".interrupted"))
        # Another seed is another lock: it runs.
        other = resume_task(out, script, "--seed", "2")
        assert other.returncode == 0 and other.stdout == "", other.stdout + other.stderr
    finally:
        open(go, "w").close()
        stdout, stderr = first.communicate(timeout=60)
    assert first.returncode == 0 and stdout == "", stdout + stderr
    third = resume_task(out, script, "--seed", "1")
    assert third.stdout.splitlines() == [
        f"skip {NAME}: finished in runs/{os.path.basename(running)} (5,000 steps, code aaaaaaa); --no-resume reruns it"
    ]


def test_no_resume_reruns_and_moves_nothing(tmp_path):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    finished = run_folder(out, "SafetyPointGoal1-v0__fake__1__100")
    interrupted = run_folder(out, "SafetyPointGoal1-v0__fake__1__200", finished=False)
    result = resume_task(out, script, "--seed", "1", no_resume=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    assert os.path.exists(finished) and os.path.exists(interrupted) and len(run_names(out)) == 3
    assert not os.path.exists(os.path.join(out, "runs", ".interrupted"))
    assert read_text(os.path.join(out, "logs", "fake.log")) == "trained 5000 steps\nto stderr\n"


def test_resume_passes_on_the_scripts_exit_code(tmp_path):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    # The script rejects it: one line on stderr says the check could not be made; the script's own error is in
    # the log, as without resume.
    result = resume_task(out, script, "--seed", "x")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "resume check failed (SystemExit: 2); running without resume\n"
    assert "--seed" in read_text(os.path.join(out, "logs", "fake.log"))
    assert not os.path.exists(os.path.join(out, "runs"))


def test_resume_says_when_it_cannot_check_and_runs_anyway(tmp_path):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path, broken=True)  # code_version() raises when resume.py imports the script
    run_folder(out, "SafetyPointGoal1-v0__fake__1__100")  # would have been skipped
    result = resume_task(out, script, "--seed", "1")
    assert result.returncode == 0 and result.stdout == "", result.stdout
    assert result.stderr == "resume check failed (RuntimeError: git is broken); running without resume\n"
    assert len(run_names(out)) == 2
    assert read_text(os.path.join(out, "logs", "fake.log")) == "trained 5000 steps\nto stderr\n"


def test_resume_key_is_what_the_real_script_would_write(tmp_path):
    """The key comes from the script's own Args (its defaults when an argument is not given), completed by its
    env_layout, and code_version(); the fields that do not change results are left out."""
    ppo_module = load_script("ppo")
    ppo, cvpo = (os.path.join(ROOT, f"{name}.py") for name in ("ppo", "cvpo"))
    key = resume.run_key(ppo, ["--env-id", "SafetyHalfCheetahVelocity-v1", "--seed", "3"])
    fields = {f.name for f in dataclasses.fields(ppo_module.Args)}
    assert set(key) == fields - set(resume.IGNORED_FIELDS) | {"code_commit"}
    assert {"track", "cuda", "save_model", "eval_checkpoint"} <= fields and "eval_episodes" in key
    assert (key["exp_name"], key["env_id"], key["seed"], key["total_timesteps"]) == (
        "ppo",
        "SafetyHalfCheetahVelocity-v1",
        3,
        1_000_000,
    )
    assert (key["num_envs"], key["num_steps"]) == (8, 1000)  # env_layout's, as config.json records them
    assert key["code_commit"] == ppo_module.code_version()["code_commit"]
    assert resume.run_key(ppo, ["--total-timesteps", "2000"])["total_timesteps"] == 2000
    assert resume.run_key(cvpo, [])["total_timesteps"] == 300_000  # cvpo's own default
    assert resume.run_key(cvpo, [])["num_envs"] == 2  # cvpo's env_layout, on a navigation task


def test_benchmark_drops_repeated_list_entries(tmp_path):
    """Two tasks of one run would run it twice at once (the lock would stop the second, but it is not meant)."""
    result = run_benchmark(
        tmp_path,
        "--slurm",
        "--algos",
        "ppo,cvpo,ppo",
        "--envs",
        "SafetyPointGoal1-v0,SafetyPointGoal1-v0",
        "--seeds",
        "2,1,2",
    )
    assert result.returncode == 0, result.stderr
    tasks = read_text(tmp_path / "bench" / "tasks.txt").splitlines()
    runs = [re.search(r"/(\w+)\.py' --env-id (\S+) --seed (\d+)", t).groups() for t in tasks]
    env = "SafetyPointGoal1-v0"
    assert runs == [("ppo", env, "2"), ("ppo", env, "1"), ("cvpo", env, "2"), ("cvpo", env, "1")]  # first kept
    assert "#SBATCH --array=0-3" in read_text(tmp_path / "bench" / "benchmark.sbatch")


def committed(script: str) -> bool:
    """Whether ROOT/script.py is a committed version (else resume.py reruns it, and a test of skipping cannot run)."""
    return resume.is_commit(load_script(script).code_version()["code_commit"])


def test_a_slurm_task_line_skips_a_finished_run(tmp_path):
    """The same line runs locally and as an array task: run it as the sbatch script does, with a finished run of the
    same key in OUT/runs (the real ppo.py: nothing trains, since it is skipped)."""
    if not committed("ppo"):
        pytest.skip("ppo.py has uncommitted edits: it would train rather than be skipped")
    result = run_benchmark(tmp_path, "--slurm", "--algos", "ppo", "--envs", "SafetyPointGoal1-v0", "--seeds", "1")
    assert result.returncode == 0, result.stderr
    out = str(tmp_path / "bench")
    (task,) = read_text(os.path.join(out, "tasks.txt")).splitlines()
    assert "benchmarks/resume.py' --log 'logs/ppo__SafetyPointGoal1-v0__1.log'" in task and "--no-resume" not in task
    # What ppo.py writes to config.json for these arguments: every Args field after env_layout, and its code.
    ppo = load_script("ppo")
    args = ppo.env_layout(ppo.Args(env_id="SafetyPointGoal1-v0", seed=1))
    run_dir = os.path.join(out, "runs", "SafetyPointGoal1-v0__ppo__1__100")
    os.makedirs(run_dir)
    write_json(os.path.join(run_dir, "config.json"), {**dataclasses.asdict(args), **ppo.code_version()})
    write_json(os.path.join(run_dir, "summary.json"), {})
    ran = subprocess.run(["bash", "-c", task], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("skip ppo__SafetyPointGoal1-v0__1: finished in runs/SafetyPointGoal1-v0__ppo__1__100")
    assert not os.path.exists(os.path.join(out, "logs", "ppo__SafetyPointGoal1-v0__1.log"))
    assert read_text(os.path.join(out, "failed.txt")) == ""
    # --no-resume goes into every line.
    result = run_benchmark(tmp_path, "--slurm", "--algos", "ppo", "--envs", "SafetyPointGoal1-v0", "--no-resume")
    assert all("resume.py' --no-resume --log" in t for t in read_text(os.path.join(out, "tasks.txt")).splitlines())


@pytest.mark.slow
def test_quick_benchmark_resumes_locally(tmp_path):
    """benchmark.sh end to end with the real ppo.py: an interrupted run is moved aside and rerun, a finished one
    is skipped, --no-resume runs it again and the report keeps the newer run."""
    if not committed("ppo"):
        pytest.skip("ppo.py has uncommitted edits: resume.py reruns it every time")
    args = ("--quick", "--algos", "ppo", "--seeds", "1", "--workers", "1")
    runs = lambda: sorted(name for name in os.listdir(tmp_path / "bench" / "runs") if not name.startswith("."))
    first = run_benchmark(tmp_path, *args)
    skips = lambda result: [line for line in result.stdout.splitlines() if line.startswith("skip ")]
    assert first.returncode == 0 and skips(first) == [], first.stdout + first.stderr
    (interrupted,) = runs()
    os.remove(tmp_path / "bench" / "runs" / interrupted / "summary.json")  # as if stopped before the end
    second = run_benchmark(tmp_path, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (
        f"moved interrupted run runs/{interrupted} (no summary.json) to runs/.interrupted/{interrupted}"
        in second.stdout
    )
    (finished,) = runs()
    assert finished != interrupted and os.path.exists(tmp_path / "bench" / "runs" / finished / "summary.json")
    log = read_text(tmp_path / "bench" / "logs" / "ppo__SafetyHalfCheetahVelocity-v1__1.log")
    third = run_benchmark(tmp_path, *args)
    assert third.returncode == 0, third.stdout + third.stderr
    assert len(skips(third)) == 1 and skips(third)[0].startswith(
        f"skip ppo__SafetyHalfCheetahVelocity-v1__1: finished in runs/{finished}"
    )
    assert runs() == [finished]
    assert read_text(tmp_path / "bench" / "logs" / "ppo__SafetyHalfCheetahVelocity-v1__1.log") == log
    fourth = run_benchmark(tmp_path, *args, "--no-resume")
    assert fourth.returncode == 0 and skips(fourth) == [], fourth.stdout + fourth.stderr
    assert len(runs()) == 2 and finished in runs()
    text = read_text(tmp_path / "bench" / "results.md")
    assert table_row(text, "ppo", "SafetyHalfCheetahVelocity-v1")[2] == "1"  # the newer run of the seed
    assert (
        "Left out: 1 older finished run of an algo × env × seed that has a newer one (the newest is kept): "
        f"runs/{finished}." in text
    )
