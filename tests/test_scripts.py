"""Every algorithm script run as a user runs it: smoke runs, seeded determinism, bad input, the NaN guard."""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import (
    ROOT,
    assert_clean_error,
    assert_finite_rows,
    load_script,
    only_run_dir,
    read_json,
    read_progress,
    read_text,
    run_script,
    top_level_source,
)

pytestmark = pytest.mark.slow  # every test here runs a script or reads its runs

COMMON_COLUMNS = ["global_step", "episodic_return", "episodic_cost", "episodic_length", "sps", "cost_rate"]
SCRIPTS = {  # script: (its own progress.csv keys, envs of the smoke run)
    "ppo": (["approx_kl", "clipfrac"], ["SafetyPointGoal1-v0", "SafetyHalfCheetahVelocity-v1"]),
    "ppo_lagrangian": (
        [
            "lagrange_multiplier",
            "cost_estimate",
            "cost_estimate_episodes",
            "pid_p",
            "pid_i",
            "pid_d",
            "cost_value_loss",
            "approx_kl",
        ],
        ["SafetyPointGoal1-v0"],
    ),
    "trpo": (["kl", "line_search_steps", "surrogate_improvement"], ["SafetyHalfCheetahVelocity-v1"]),
    "cppo": (
        [
            "cppo/theta",
            "cppo/kappa",
            "cppo/clipped_fraction",
            "cppo/m_step_epochs",
            "cppo/step_scale",
            "kl",
            "entropy",
            "cost_limit",
            "cost_estimate",
            "cost_estimate_episodes",
            "lagrange_multiplier",
            "pid_i",
        ],
        ["SafetyPointGoal1-v0"],
    ),
    "dyna_cppo": (
        [
            "cppo/theta",
            "cppo/step_scale",
            "cost_limit",
            "cost_estimate",
            "model/loss",
            "model/one_step_error",
            "model/k_step_error",
            "model/skill",
            "model/zero_change_error",
            "model/mean_delta_error",
            "imagined/return",
            "imagined/cost",
            "time_model",
            "time_imagination",
            "cumulative_cost",
        ],
        ["SafetyPointGoal1-v0"],
    ),
    "cvpo": (
        ["cvpo/eta", "cvpo/lambda", "cvpo/kl_mean", "cvpo/kl_var", "q_r_loss", "q_c_loss"],
        ["SafetyPointCircle1-v0"],
    ),
}
# Small imagination from the first update on, so that the short runs exercise the model and the imagined update.
EXTRA = {"dyna_cppo": {"horizon": 5, "model_start_iter": 0, "model_rollouts": 64, "imagination_min_skill": -1e9}}
# CVPO is off-policy: no rollouts; small networks, and updates from step 500 (one progress row per 1000 steps).
OFF_POLICY = {"learning_starts": 500, "batch_size": 32, "num_sampled_actions": 4, "hidden": 32, "update_every": 8}
HELD = {"num_envs": 2, "num_steps": 125, "total_timesteps": 2000}  # 4 env steps per decision on navigation tasks
SMOKE_SIZES = {
    "cvpo": {"num_envs": 1, "total_timesteps": 2000, "log_every": 1000, **OFF_POLICY},  # 8 env steps per decision
    "ppo_lagrangian": HELD,
    "cppo": {**HELD, "num_envs": 1},  # 8 env steps per decision: 1 env x 125 decisions is 1000 env steps
    "dyna_cppo": {**HELD, "num_envs": 1},
}
as_cli = lambda fields: [x for k, v in fields.items() for x in (f"--{k.replace('_', '-')}", str(v))]
SMOKE = ["--save-model"]
smoke_sizes = lambda script: SMOKE_SIZES.get(script, {"num_envs": 2, "num_steps": 500, "total_timesteps": 2000})


@pytest.mark.parametrize("script, env_id", [(s, e) for s, (_, envs) in SCRIPTS.items() for e in envs])
def test_smoke_run_writes_run_folder(tmp_path, script, env_id):
    eval_episodes = "2" if "Velocity" in env_id else "1"  # velocity episodes are fast: two test the per-episode seeds
    result = run_script(
        script,
        tmp_path,
        "--env-id",
        env_id,
        "--seed",
        "3",
        *SMOKE,
        "--eval-episodes",
        eval_episodes,
        *as_cli(smoke_sizes(script)),
        *as_cli(EXTRA.get(script, {})),
    )
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(tmp_path)
    assert os.path.basename(run_dir).startswith(f"{env_id}__{script}__3__")
    config = read_json(os.path.join(run_dir, "config.json"))
    assert config["env_id"] == env_id and config["total_timesteps"] == 2000
    # which code ran: this checkout's HEAD, and the last commit that changed the script (git asked directly)
    git = lambda *cmd: subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if git("rev-parse", "--is-inside-work-tree") == "true":
        assert config["git_commit"] == git("rev-parse", "HEAD")
        assert config["code_commit"].removesuffix("-dirty") == git("rev-list", "-1", "HEAD", "--", f"{script}.py")
    rows = read_progress(run_dir)
    assert [int(r["global_step"]) for r in rows] == [1000, 2000]
    # NaN in the first rows, finite in the last: no episode has ended yet (episodic keys, the cost window), no model
    # yet to hold data out (its scores), so no skill to open imagination's gate. The cost head's precision and
    # recall (and its Brier skill) are NaN while it sees or predicts no cost, which a short run cannot rule out:
    # not checked here
    # (tests/test_dyna_cppo.py scores them).
    first_rows_nan = (
        "episodic_return",
        "episodic_cost",
        "episodic_length",
        "cost_estimate",
        *(k for k in rows[0] if k.startswith(("model/", "imagined/")) and k != "model/loss"),
    )
    classifier = ("model/cost_precision", "model/cost_recall", "model/cost_skill")
    assert_finite_rows(
        [{k: v for k, v in r.items() if k not in classifier} for r in rows],
        COMMON_COLUMNS + SCRIPTS[script][0],
        skip=[k for k in first_rows_nan if k not in classifier],
    )
    if script == "dyna_cppo":
        assert float(rows[-1]["imagined/on"]) == 1.0 and np.isfinite(float(rows[-1]["imagined/return"]))
    assert "step      2000" in result.stdout
    # One line per update, with the time spent and an estimate of the time left (0:00 at the last update).
    lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(lines) == len(rows) and all(re.search(r"\| elapsed \d+:\d\d \| left \d+:\d\d$", x) for x in lines)
    assert lines[-1].endswith("| left 0:00")
    # Both evaluations, on stdout and in summary.json, with the same keys in every script.
    summary = read_json(os.path.join(run_dir, "summary.json"))
    for mode in ("stochastic", "deterministic"):
        assert f"eval ({mode}) over {eval_episodes} episodes" in result.stdout
        for key in (f"eval_{mode}_return", f"eval_{mode}_return_std", f"eval_{mode}_cost", f"eval_{mode}_cost_std"):
            assert np.isfinite(summary[key]), key
    assert summary["eval_stochastic_return"] != summary["eval_deterministic_return"]  # sampled actions differ
    # The checkpoint evaluates from the command line, nothing trained, to the numbers of the end of training.
    checkpoint = os.path.join(run_dir, f"{script}.pt")
    again = run_script(
        script, tmp_path / "eval", "--eval-checkpoint", checkpoint, "--eval-episodes", eval_episodes, "--seed", "3"
    )
    assert again.returncode == 0, again.stderr
    eval_dir = only_run_dir(tmp_path / "eval")
    assert os.path.basename(eval_dir).startswith(f"{env_id}__{script}-eval__3__")
    assert not os.path.exists(os.path.join(eval_dir, "progress.csv"))
    assert read_json(os.path.join(eval_dir, "summary.json")) == {
        k: v for k, v in summary.items() if k.startswith("eval_")
    }
    # The checkpoint holds the policy and the normalisation statistics of the run, and evaluates.
    module = load_script(script)
    actor, rms = module.load_checkpoint(os.path.join(run_dir, f"{script}.pt"))
    assert rms.count > 2000 // config.get("action_repeat", 1)  # one observation per decision
    obs = np.random.default_rng(0).normal(size=(3, rms.mean.shape[0]))
    assert np.isfinite(module.policy_action(actor, rms, obs)).all()
    if "Velocity" in env_id:  # a full evaluation episode is fast here
        returns, costs = module.evaluate(actor, rms, env_id, episodes=1, seed=0)
        assert np.isfinite(returns).all() and (costs >= 0).all()


@pytest.mark.parametrize("mode", ["offline", "no API key"])
def test_track_logs_to_wandb_offline(tmp_path, mode):
    args = [
        "--env-id",
        "SafetyHalfCheetahVelocity-v1",
        "--num-envs",
        "1",
        "--num-steps",
        "500",
        "--total-timesteps",
        "1000",
        "--eval-episodes",
        "0",
        "--track",
    ]
    env = (
        {"WANDB_MODE": "offline"}
        if mode == "offline"
        else {"WANDB_MODE": None, "WANDB_API_KEY": None, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    )
    result = run_script("ppo", tmp_path, *args, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    runs = glob.glob(os.path.join(only_run_dir(tmp_path), "wandb", "offline-run-*", "run-*.wandb"))
    assert len(runs) == 1 and os.path.getsize(runs[0]) > 0
    if mode == "no API key":
        assert "logging offline" in result.stderr


def progress_without_timing(module, cwd, seed):
    sizes = (
        dict(total_timesteps=1500, log_every=500, **OFF_POLICY)
        if module.__name__ == "cvpo"
        else dict(num_steps=250, total_timesteps=1500)
    )
    args = module.Args(
        env_id="SafetyHalfCheetahVelocity-v1",
        num_envs=2,
        eval_episodes=0,
        seed=seed,
        **sizes,
        **EXTRA.get(module.__name__, {}),
    )
    os.makedirs(cwd)
    os.chdir(cwd)
    module.main(args)
    timing = lambda key: key == "sps" or key.startswith("time_")
    return [{k: v for k, v in row.items() if not timing(k)} for row in read_progress(only_run_dir(cwd))]


@pytest.mark.parametrize("script", SCRIPTS)
def test_seeded_runs_are_identical(tmp_path, monkeypatch, script):
    monkeypatch.chdir(tmp_path)  # restores the working directory afterwards
    module = load_script(script)
    first = progress_without_timing(module, tmp_path / "a", 7)
    assert first == progress_without_timing(module, tmp_path / "b", 7)
    assert first != progress_without_timing(module, tmp_path / "c", 8)


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_input_on_the_command_line_gives_one_clear_line(tmp_path, script):
    assert_clean_error(run_script(script, tmp_path, "--env-id", "SafetyNoSuchEnv-v0", timeout=120), "unknown env id")
    assert not os.path.exists(tmp_path / "runs")


BAD_INPUT = [  # Args fields, words the error line must contain
    ({"env_id": "SafetyNoSuchEnv-v0"}, ["unknown env id"]),
    ({"env_id": "SafetyPointGoal1Vision-v0", "num_envs": 1}, ["flat Box observation"]),
    ({"num_envs": 0}, ["--num-envs", "positive"]),
    ({"total_timesteps": 0}, ["--total-timesteps", "positive"]),
    ({"eval_episodes": -1}, ["--eval-episodes"]),
    ({"eval_checkpoint": "no/such/checkpoint.pt"}, ["--eval-checkpoint", "no/such/checkpoint.pt"]),
    ({"eval_checkpoint": "x.pt", "eval_episodes": 0}, ["--eval-checkpoint", "--eval-episodes"]),
]
ON_POLICY_BAD_INPUT = [
    ({"num_steps": -5}, ["--num-steps", "positive"]),
    ({"total_timesteps": 100}, ["smaller than one rollout"]),
    ({"num_minibatches": 0}, ["--num-minibatches", "positive"]),
    ({"learning_rate": float("nan")}, ["--learning-rate"]),
]
SCRIPT_BAD_INPUT = {
    "ppo_lagrangian": [
        ({"cost_limit": -1.0}, ["--cost-limit"]),
        ({"cost_window": 0}, ["--cost-window"]),
        ({"pid_error_bound": 0.0}, ["--pid-error-bound"]),
        ({"pid_setpoint": 0.0}, ["--pid-setpoint"]),
        ({"pid_setpoint": 1.5}, ["--pid-setpoint"]),
        ({"action_repeat": 0}, ["--action-repeat"]),
    ],
    "trpo": [
        ({"max_kl": 0.0}, ["--max-kl"]),
        ({"cg_iters": 0}, ["--cg-iters"]),
        ({"line_search_decay": 1.0}, ["--line-search-decay"]),
    ],
    "cppo": [
        ({"max_kl": -0.1}, ["--max-kl"]),
        ({"clip_coef": 0.0}, ["--clip-coef"]),
        ({"max_step_scale": -1.0}, ["--max-step-scale"]),
        ({"cost_window": 0}, ["--cost-window"]),
        ({"pid_setpoint": 0.0}, ["--pid-setpoint"]),
        ({"max_step_scale": 0.5}, ["--max-step-scale"]),
        ({"action_repeat": 0}, ["--action-repeat"]),
    ],
    "dyna_cppo": [
        ({"horizon": 0}, ["--horizon", "positive"]),
        ({"action_repeat": 0}, ["--action-repeat"]),
        ({"env_id": "SafetyPointCircle1-v0", "horizon": 130, "action_repeat": 4}, ["--horizon 130", "longer than"]),
        ({"multi_step_k": 0}, ["--multi-step-k", "positive"]),
        ({"env_id": "SafetyPointCircle1-v0", "horizon": 600}, ["--horizon 600", "longer than an episode"]),
        ({"model_rollouts": -1}, ["--model-rollouts"]),
        ({"cost_window": 0}, ["--cost-window"]),
        ({"pid_setpoint": 2.0}, ["--pid-setpoint"]),
    ],
    "cvpo": [
        ({"batch_size": 0}, ["--batch-size", "positive"]),
        ({"buffer_size": 100}, ["--buffer-size"]),
        ({"total_timesteps": 5000}, ["--learning-starts"]),
        ({"num_sampled_actions": 1}, ["--num-sampled-actions"]),
        ({"tau": 0.0}, ["--tau"]),
        ({"gamma": 1.0}, ["--gamma"]),
        ({"kl_mean_constraint": -1.0}, ["--kl-mean"]),
        ({"cost_limit": float("inf")}, ["--cost-limit"]),
        ({"action_repeat": 0}, ["--action-repeat"]),
    ],
}
NAN_TRIGGER = {  # an argument that makes a loss NaN, and the loss the guard must name
    "ppo": ({"clip_coef": float("nan")}, "policy_loss"),
    "ppo_lagrangian": ({"clip_coef": float("nan")}, "policy_loss"),
    "trpo": ({"max_grad_norm": float("nan")}, "value_loss"),
    "cppo": ({"max_grad_norm": float("nan")}, "policy_loss"),
    "dyna_cppo": ({"max_grad_norm": float("nan")}, "policy_loss"),
    "cvpo": ({"critic_lr": 1e30, "total_timesteps": 1000, **OFF_POLICY}, "q_r_loss"),
}


@pytest.mark.parametrize(
    "script, fields, words",
    [
        (s, f, w)
        for s in SCRIPTS
        for f, w in BAD_INPUT + SCRIPT_BAD_INPUT.get(s, []) + (ON_POLICY_BAD_INPUT if s != "cvpo" else [])
    ],
)
def test_bad_input_stops_before_training(tmp_path, monkeypatch, script, fields, words):
    """main() raises SystemExit("error: ...") (Python prints it as one line, exit 1) before making a run folder."""
    monkeypatch.chdir(tmp_path)
    module = load_script(script)
    with pytest.raises(SystemExit) as stop:
        module.main(module.Args(**fields))
    message = str(stop.value)
    assert message.startswith("error:") and "\n" not in message, message
    for word in words:
        assert word in message, message
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("script", SCRIPTS)
def test_non_finite_loss_stops_the_run(tmp_path, monkeypatch, script):
    monkeypatch.chdir(tmp_path)
    module = load_script(script)
    fields, loss_name = NAN_TRIGGER[script]
    sizes = {} if script == "cvpo" else {"num_steps": 500, "total_timesteps": 1000}
    args = module.Args(env_id="SafetyHalfCheetahVelocity-v1", num_envs=1, eval_episodes=0, **{**sizes, **fields})
    with pytest.raises(SystemExit, match=f"non-finite {loss_name}"):
        module.main(args)


def child_pids(pid: int) -> list:
    children = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            children += [int(c) for c in f.read().split()]
    return children


@pytest.mark.parametrize("script", ["ppo", "cvpo"])
def test_a_dead_env_worker_ends_the_run_with_one_line_and_keeps_progress_csv(tmp_path, script):
    """SIGKILL (what the kernel's OOM killer sends) to one env worker of a running navigation run: the run stops with
    a non-zero exit and one line naming the worker and the signal, and progress.csv keeps the rows logged so far."""
    sizes = ["--log-every", "200", "--learning-starts", "100000"] if script == "cvpo" else ["--num-steps", "100"]
    command = [
        sys.executable,
        os.path.join(ROOT, f"{script}.py"),
        "--num-envs",
        "2",
        "--total-timesteps",
        "1000000",
        "--eval-episodes",
        "0",
        *sizes,
    ]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline, rows = time.time() + 120, []
        while time.time() < deadline and len(rows) < 2:  # wait for two progress rows
            time.sleep(0.5)
            paths = glob.glob(os.path.join(tmp_path, "runs", "*", "progress.csv"))
            rows = read_progress(os.path.dirname(paths[0])) if paths else []
        assert len(rows) >= 2, "the run did not log two rows in time"
        workers = child_pids(proc.pid)
        assert len(workers) == 2, workers  # one process per navigation env
        os.kill(workers[1], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: env worker 1 (pid {workers[1]}) killed by SIGKILL (likely out of memory"), last
    assert "progress.csv" in last
    assert len(read_progress(only_run_dir(tmp_path))) >= len(rows)


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_env_layout_defaults_follow_the_task(script):
    """None means: 2 envs (processes) on navigation tasks, 8 (CVPO: 4) in-process on velocity tasks, and a batch of
    8000 samples; what the user sets is kept."""
    module = load_script(script)
    nav, vel = (
        module.env_layout(module.Args(env_id=e)) for e in ("SafetyPointGoal1-v0", "SafetyHalfCheetahVelocity-v1")
    )
    assert nav.num_envs == 2 and vel.num_envs == (4 if script == "cvpo" else 8)
    assert module.env_layout(module.Args(num_envs=5)).num_envs == 5
    if script == "cvpo":  # and: each action held for 8 env steps on navigation tasks, one update per 128 env steps
        assert (nav.action_repeat, nav.update_every, vel.action_repeat, vel.update_every) == (8, 128, 1, 64)
        kept = module.env_layout(module.Args(action_repeat=2, update_every=7))
        assert (kept.action_repeat, kept.update_every) == (2, 7)
    else:
        assert (nav.num_steps, vel.num_steps) == (4000, 1000)
        assert module.env_layout(module.Args(num_envs=4)).num_steps == 2000
        assert module.env_layout(module.Args(num_steps=7)).num_steps == 7


SHARED_BY_ALL = (
    "check_spaces",
    "RunningMeanStd",
    "make_envs",
    "step_envs",
    "evaluate",
    "final_evaluation",
    "evaluate_checkpoint",
    "minutes",
    "code_version",
    "start_run",
    "finish_run",
    "Episode",
    "episode_columns",
    "policy_action",
    "RunLogger",
)
# The plumbing cvpo.py has its own of (no --num-steps; its actor squashes actions into the box): exactly these, and
# check_args, which every script has its own of. The on-policy five share them, and more above their banner.
CVPO_OWN = ("env_layout", "save_checkpoint", "load_checkpoint")
# cvpo.py's policy_action is its own too (its actor returns the mean and std), though the banners do not name it.
CVPO_OWN_UNNAMED = ("policy_action",)
# ppo_lagrangian.py, cppo.py, dyna_cppo.py and cvpo.py hold each action for --action-repeat env steps, in training
# and in evaluation: their own of these, the same in all four (and the on-policy three share repeat_layout).
REPEATING, REPEAT_OWN = ("ppo_lagrangian", "cppo", "dyna_cppo", "cvpo"), ("make_envs", "evaluate")
OWN = {("cvpo", name) for name in (*CVPO_OWN, *CVPO_OWN_UNNAMED)} | {
    (script, name) for script in REPEATING for name in REPEAT_OWN
}
SHARED_ON_POLICY = (
    *CVPO_OWN,
    "layer_init",
    "MLP",
    "gaussian_log_prob",
    "Critic",
    "compute_gae",
)


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_runs_when_copied_alone_into_an_empty_folder(tmp_path, script):
    """Users copy one file into their project: it must import nothing local. The copy sits outside any git
    checkout, so its config.json says so (code_commit null)."""
    folder = tmp_path / "project"
    folder.mkdir()
    copy = folder / f"{script}.py"
    copy.write_text(read_text(os.path.join(ROOT, f"{script}.py")))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("GIT_")}
    env |= {"WANDB_MODE": "offline", "GIT_CEILING_DIRECTORIES": str(tmp_path)}  # even if TMPDIR is in a checkout
    sizes = as_cli(smoke_sizes(script))
    cmd = [sys.executable, str(copy), "--env-id", "SafetyHalfCheetahVelocity-v1", "--eval-episodes", "0", *sizes]
    result = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert set(os.listdir(folder)) == {f"{script}.py", "runs"}
    config = read_json(os.path.join(only_run_dir(folder), "config.json"))
    assert config["code_commit"] is None and config["git_commit"] is None


def test_code_version_names_the_last_commit_of_the_script_and_marks_edits(tmp_path, monkeypatch):
    """config.json's git_commit and code_commit: benchmark.sh resumes on code_commit, so it must move with the
    script and not with other files, say when the file was edited, and be None for a copy outside git."""
    for name in [k for k in os.environ if k.startswith("GIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # tmp_path is no checkout, wherever it is
    code_version = load_script("ppo").code_version
    git = lambda *cmd: subprocess.run(["git", *cmd], cwd=tmp_path, check=True, capture_output=True, text=True)
    copy = tmp_path / "ppo.py"
    copy.write_text("print(1)\n")
    assert code_version(str(copy)) == {"git_commit": None, "code_commit": None}
    commit = lambda *cmd: git("-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "commit", *cmd)
    git("init", "-q")
    commit("-q", "--allow-empty", "-m", "empty")
    assert code_version(str(copy))["code_commit"] is None  # in a checkout, but never committed
    git("add", "ppo.py")
    commit("-q", "-m", "script")
    first = git("rev-parse", "HEAD").stdout.strip()
    assert code_version(str(copy)) == {"git_commit": first, "code_commit": first}
    (tmp_path / "README.md").write_text("docs\n")
    git("add", "README.md")
    commit("-q", "-m", "docs")
    head = git("rev-parse", "HEAD").stdout.strip()
    assert head != first and code_version(str(copy)) == {"git_commit": head, "code_commit": first}
    copy.write_text("print(2)\n")
    assert code_version(str(copy)) == {"git_commit": head, "code_commit": first + "-dirty"}


def test_minutes_formats_seconds_as_m_ss():
    minutes = load_script("ppo").minutes
    assert [minutes(x) for x in (0, 59.9, 61, 3725)] == ["0:00", "0:59", "1:01", "62:05"]


def test_shared_plumbing_is_the_same_in_every_script():
    """A fix to a shared helper (the env layout, the dead-worker message, evaluation, the logger) in one script
    cannot silently miss the others; and the plumbing sits below main, under the banner that says so."""
    on_policy = [s for s in SCRIPTS if s != "cvpo"]
    source_of = lambda script, name: top_level_source(os.path.join(ROOT, f"{script}.py"), name)
    for names, scripts in ((SHARED_BY_ALL, list(SCRIPTS)), (SHARED_ON_POLICY, on_policy)):
        for name in names:
            sources = {s: source_of(s, name) for s in scripts if (s, name) not in OWN}
            assert len(set(sources.values())) == 1, (name, sorted(sources))
    assert all(source_of(script, name) != source_of("ppo", name) for script, name in OWN)
    for script in SCRIPTS:
        source = read_text(os.path.join(ROOT, f"{script}.py"))
        banner = source.index("# Plumbing: the same in every script")
        assert source.index("\ndef main(") < banner < source.index("\ndef step_envs(")
        # Below the banner: the shared plumbing, cvpo.py's own versions (which the banner names), check_args.
        assert set(re.findall(r"^(?:def|class) (\w+)", source[banner:], flags=re.M)) == {
            *SHARED_BY_ALL,
            *CVPO_OWN,
            "check_args",
        }, script
        banner_text = " ".join(re.match(r"(#.*\n)+", source[banner:]).group(0).split())
        assert all(name in banner_text for name in ("check_args", *CVPO_OWN)), script
    for name in (*REPEAT_OWN, "ActionRepeat"):
        assert len({source_of(script, name) for script in REPEATING}) == 1, name
    assert len({source_of(script, "repeat_layout") for script in REPEATING if script != "cvpo"}) == 1
    for script in REPEATING:
        banner = read_text(os.path.join(ROOT, f"{script}.py")).split("# Plumbing: the same in every script")[1]
        assert all(name in banner[: banner.index("\ndef ")] for name in REPEAT_OWN), script
