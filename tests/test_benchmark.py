"""benchmark.sh and its report step: known run folders in, known tables out; the quick matrix end to end."""

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, load_script, read_text, write_json

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
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
):
    """A finished run folder with one progress row per (return, cost), 1000 steps apart; `without` drops
    config.json keys (an older run without code_commit, a script without cost_limit)."""
    run_dir = os.path.join(out, "runs", f"{env}__{algo}__{seed}__1700000000")
    os.makedirs(run_dir)
    config = {
        "exp_name": algo,
        "env_id": env,
        "seed": seed,
        "cost_limit": cost_limit,
        "num_envs": num_envs,
        "git_commit": COMMIT_B,
        "code_commit": code_commit,
    }
    write_json(os.path.join(run_dir, "config.json"), {k: v for k, v in config.items() if k not in without})
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
    # The mark is explained once, in the line under the table; the per-run table says which run ran which code.
    results = section(text, None).strip().splitlines()
    assert results[-1].startswith("Code: the runs' `code_commit`") and f" {report.MARK}: " in results[-1]
    assert sum(report.MARK in line for line in results if not line.startswith("|")) == 1
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


def test_curves_are_a_trailing_mean_over_updates():
    assert report.smooth([1, 2, 3, 4, 5], 2).tolist() == [1.0, 1.5, 2.5, 3.5, 4.5]
    assert report.smooth([4, 0, 8], 1).tolist() == [4.0, 0.0, 8.0]


# Resume: benchmarks/resume.py, run as each line of tasks.txt runs it (in OUT), on a stand-in script that has the
# interface resume.py uses (Args, code_version) and writes a finished run folder at once.
RESUME = os.path.join(ROOT, "benchmarks", "resume.py")
FAKE_SCRIPT = """
import dataclasses, json, os, sys, time
from dataclasses import dataclass
import tyro


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    env_id: str = "SafetyPointGoal1-v0"
    seed: int = 1
    total_timesteps: int = 5000


def code_version(script=__file__):
    return {"git_commit": None, "code_commit": CODE_COMMIT}


if __name__ == "__main__":
    args = tyro.cli(Args)
    run_dir = os.path.join("runs", f"{args.env_id}__{args.exp_name}__{args.seed}__{time.time_ns()}")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({**dataclasses.asdict(args), **code_version()}, f)
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump({}, f)
    print("trained", args.total_timesteps, "steps")
    print("to stderr", file=sys.stderr)
"""


def fake_script(tmp_path, code_commit=COMMIT_A) -> str:
    path = str(tmp_path / "fake.py")
    with open(path, "w") as f:
        f.write(f"CODE_COMMIT = {code_commit!r}\n" + FAKE_SCRIPT)
    return path


def run_folder(out, name, finished=True, **config):
    """A hand-made run folder of fake.py: its config.json key (defaults: seed 1, 5000 steps, COMMIT_A)."""
    run_dir = os.path.join(out, "runs", name)
    os.makedirs(run_dir)
    key = {"exp_name": "fake", "env_id": "SafetyPointGoal1-v0", "seed": 1, "total_timesteps": 5000}
    write_json(os.path.join(run_dir, "config.json"), {**key, "code_commit": COMMIT_A, "cost_limit": 25.0, **config})
    with open(os.path.join(run_dir, "progress.csv"), "w") as f:
        f.write("global_step,episodic_return,episodic_cost\n1000,1,2\n")
    if finished:
        write_json(os.path.join(run_dir, "summary.json"), {"train_seconds": 1.0})
    return run_dir


def resume_task(out, script, *args, no_resume=False):
    """One task line's command: resume.py [--no-resume] --log logs/fake.log SCRIPT ARGS, in OUT."""
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    command = [sys.executable, RESUME, *(["--no-resume"] if no_resume else []), "--log", "logs/fake.log", script]
    return subprocess.run([*command, *args], cwd=out, capture_output=True, text=True, timeout=120)


def run_names(out):
    return sorted(os.listdir(os.path.join(out, "runs")))


def test_resume_skips_a_run_that_finished_with_the_same_code(tmp_path):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    run_folder(out, "SafetyPointGoal1-v0__fake__1__100")
    run_folder(out, "SafetyPointGoal1-v0__fake__2__100", finished=False)  # another seed: not this run's business
    os.makedirs(os.path.join(out, "logs"))
    with open(os.path.join(out, "logs", "fake.log"), "w") as f:
        f.write("the finished run's output\n")
    # No --total-timesteps: the run gets fake.py's default, 5000, which is what the finished run had.
    result = resume_task(out, script, "--env-id", "SafetyPointGoal1-v0", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "skip fake__SafetyPointGoal1-v0__1: finished in runs/SafetyPointGoal1-v0__fake__1__100 "
        "(5,000 steps, code aaaaaaa); --no-resume reruns it"
    ]
    assert run_names(out) == ["SafetyPointGoal1-v0__fake__1__100", "SafetyPointGoal1-v0__fake__2__100"]
    assert read_text(os.path.join(out, "logs", "fake.log")) == "the finished run's output\n"  # not truncated


@pytest.mark.parametrize(
    "config, args",
    [
        ({"code_commit": COMMIT_B}, []),  # the script changed since
        ({"code_commit": COMMIT_A + "-dirty"}, []),  # that run ran edits that were never committed
        ({"total_timesteps": 4000}, []),  # a different budget than the script's default
        ({}, ["--total-timesteps", "4000"]),  # a different budget than the finished run's (the default)
        ({"env_id": "SafetyCarGoal1-v0"}, []),
    ],
    ids=["other-commit", "dirty", "other-default-budget", "other-given-budget", "other-env"],
)
def test_resume_reruns_when_the_code_or_the_budget_differ(tmp_path, config, args):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    old = run_folder(out, "SafetyPointGoal1-v0__fake__1__100", **config)
    result = resume_task(out, script, "--seed", "1", *args)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    names = run_names(out)
    assert len(names) == 2 and os.path.basename(old) in names  # the old run stays; a new one ran
    steps = 4000 if args else 5000
    assert read_text(os.path.join(out, "logs", "fake.log")) == f"trained {steps} steps\nto stderr\n"


def test_resume_removes_an_interrupted_run_and_starts_again(tmp_path):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    interrupted = run_folder(out, "SafetyPointGoal1-v0__fake__1__100", finished=False)
    other_code = run_folder(out, "SafetyPointGoal1-v0__fake__1__50", finished=False, code_commit=COMMIT_B)
    result = resume_task(out, script, "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "fake__SafetyPointGoal1-v0__1: removed interrupted run runs/SafetyPointGoal1-v0__fake__1__100 "
        "(no summary.json); starting again"
    ]
    assert not os.path.exists(interrupted)
    assert os.path.exists(other_code)  # another key: left alone
    new = [name for name in run_names(out) if name != os.path.basename(other_code)]
    assert len(new) == 1 and os.path.exists(os.path.join(out, "runs", new[0], "summary.json"))
    # Run again: now it has finished, so it is skipped.
    again = resume_task(out, script, "--seed", "1")
    assert again.stdout.startswith(f"skip fake__SafetyPointGoal1-v0__1: finished in runs/{new[0]} "), again.stdout


def test_no_resume_reruns_and_removes_nothing(tmp_path):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    finished = run_folder(out, "SafetyPointGoal1-v0__fake__1__100")
    interrupted = run_folder(out, "SafetyPointGoal1-v0__fake__1__200", finished=False)
    result = resume_task(out, script, "--seed", "1", no_resume=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    assert os.path.exists(finished) and os.path.exists(interrupted) and len(run_names(out)) == 3
    assert read_text(os.path.join(out, "logs", "fake.log")) == "trained 5000 steps\nto stderr\n"


def test_resume_passes_on_the_scripts_exit_code(tmp_path):
    out = str(tmp_path / "bench")
    script = fake_script(tmp_path)
    result = resume_task(
        out, script, "--seed", "x"
    )  # the script rejects it: its own error, in the log, as without resume
    assert result.returncode == 2 and result.stdout == ""
    assert "--seed" in read_text(os.path.join(out, "logs", "fake.log"))
    assert not os.path.exists(os.path.join(out, "runs"))


def test_resume_key_is_what_the_real_script_would_write(tmp_path):
    """The key comes from the script's own Args (its default budget when none is given) and code_version()."""
    ppo, cvpo = (os.path.join(ROOT, f"{name}.py") for name in ("ppo", "cvpo"))
    key = resume.run_key(ppo, ["--env-id", "SafetyHalfCheetahVelocity-v1", "--seed", "3"])
    assert key == {
        "exp_name": "ppo",
        "env_id": "SafetyHalfCheetahVelocity-v1",
        "seed": 3,
        "total_timesteps": 1_000_000,
        "code_commit": load_script("ppo").code_version()["code_commit"],
    }
    assert resume.run_key(ppo, ["--total-timesteps", "2000"])["total_timesteps"] == 2000
    assert resume.run_key(cvpo, [])["total_timesteps"] == 300_000  # cvpo's own default


def test_a_slurm_task_line_skips_a_finished_run(tmp_path):
    """The same line runs locally and as an array task: run it as the sbatch script does, with a finished run of the
    same key in OUT/runs (the real ppo.py: nothing trains, since it is skipped)."""
    result = run_benchmark(tmp_path, "--slurm", "--algos", "ppo", "--envs", "SafetyPointGoal1-v0", "--seeds", "1")
    assert result.returncode == 0, result.stderr
    out = str(tmp_path / "bench")
    (task,) = read_text(os.path.join(out, "tasks.txt")).splitlines()
    assert "benchmarks/resume.py' --log 'logs/ppo__SafetyPointGoal1-v0__1.log'" in task and "--no-resume" not in task
    code_commit = load_script("ppo").code_version()["code_commit"]
    config = {"exp_name": "ppo", "env_id": "SafetyPointGoal1-v0", "seed": 1, "total_timesteps": 1_000_000}
    os.makedirs(os.path.join(out, "runs", "SafetyPointGoal1-v0__ppo__1__100"))
    write_json(
        os.path.join(out, "runs", "SafetyPointGoal1-v0__ppo__1__100", "config.json"),
        {**config, "code_commit": code_commit},
    )
    write_json(os.path.join(out, "runs", "SafetyPointGoal1-v0__ppo__1__100", "summary.json"), {})
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
    """benchmark.sh end to end with the real ppo.py: an interrupted run is removed and rerun, a finished one is
    skipped, --no-resume runs it again."""
    args = ("--quick", "--algos", "ppo", "--seeds", "1", "--workers", "1")
    runs = lambda: sorted(os.listdir(tmp_path / "bench" / "runs"))
    first = run_benchmark(tmp_path, *args)
    skips = lambda result: [line for line in result.stdout.splitlines() if line.startswith("skip ")]
    assert first.returncode == 0 and skips(first) == [], first.stdout + first.stderr
    (interrupted,) = runs()
    os.remove(tmp_path / "bench" / "runs" / interrupted / "summary.json")  # as if stopped before the end
    second = run_benchmark(tmp_path, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"removed interrupted run runs/{interrupted} (no summary.json)" in second.stdout
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
    assert table_row(read_text(tmp_path / "bench" / "results.md"), "ppo", "SafetyHalfCheetahVelocity-v1")[2] == "2"
