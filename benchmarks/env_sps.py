"""Raw vector-env stepping speed, and each script's end-to-end speed and peak memory beside it.

Raw stepping (random actions) is the floor that an algorithm's end-to-end SPS is compared to:
    python benchmarks/env_sps.py --env-id SafetyHalfCheetahVelocity-v1 --num-envs 8 --steps 100000
prints one JSON line {"env_id", "num_envs", "vector_env", "steps", "seconds", "sps"}. The vector mode follows
the algorithm scripts' `--vector-env auto` rule (async for navigation, sync for velocity).

With --scripts it also runs each script twice, for --steps and for 2 x --steps env steps (final evaluation off),
and prints one JSON line per script:
    python benchmarks/env_sps.py --env-id SafetyHalfCheetahVelocity-v1 --num-envs 8 --steps 40000 --scripts ppo,trpo
    {"script", "env_id", "num_envs", "steps", "sps", "raw_sps", "ratio", "peak_pss_mb", "peak_processes"}
`sps` = steps / (train_seconds of the long run - train_seconds of the short one): start-up and the first
rollout cancel out. `peak_pss_mb` is the largest summed PSS (proportional set size: shared pages split
between the processes sharing them) of the long run's process tree, sampled every --sample-every seconds (0.5). Without
--num-envs each script uses its own default, and raw stepping is measured with the same number of envs.

The machine's own speed can drift by ~10% within minutes. --paired K alternates instead: raw, run, raw, ..., K
runs of --steps each between raw measurements of --steps/2, and divides each run's steady SPS (between its
first and last progress row) by the mean of the raw SPS just before and after it:
    python benchmarks/env_sps.py --env-id SafetyPointGoal1-v0 --steps 48000 --scripts ppo_lagrangian --paired 3
"""

import argparse
import csv
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raw_sps(env_id: str, num_envs: int, steps: int, vector_env: str = "auto", seed: int = 0) -> dict:
    import safety_gymnasium

    asynchronous = vector_env == "async" or (vector_env == "auto" and num_envs > 1 and "Velocity" not in env_id)
    envs = safety_gymnasium.vector.make(env_id, num_envs=num_envs, asynchronous=asynchronous)
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    iterations = max(1, steps // num_envs)
    start = time.perf_counter()
    for _ in range(iterations):
        envs.step(rng.uniform(low, high, size=(num_envs,) + low.shape))
    seconds = time.perf_counter() - start
    envs.close()
    return {
        "env_id": env_id,
        "num_envs": num_envs,
        "vector_env": "async" if asynchronous else "sync",
        "steps": iterations * num_envs,
        "seconds": seconds,
        "sps": iterations * num_envs / seconds,
    }


def process_tree(pid: int) -> list:
    """pid and all its descendants (Linux /proc)."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:  # the process ended meanwhile
            pass
    return tree


def pss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_script(script: str, env_id: str, steps: int, num_envs, root: str, sample_every: float = 0.5) -> dict:
    """Run `script`.py for `steps` env steps in a temporary folder; return its summary.json and its peak PSS,
    sampled every `sample_every` seconds (0: not sampled, the peak reported as 0)."""
    command = [
        sys.executable,
        os.path.join(root, f"{script}.py"),
        "--env-id",
        env_id,
        "--total-timesteps",
        str(steps),
        "--eval-episodes",
        "0",
        "--exp-name",
        f"{script}-throughput",
    ]
    if num_envs is not None:
        command += ["--num-envs", str(num_envs)]
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak, processes = 0.0, 0
        while sample_every > 0 and proc.poll() is None:
            tree = process_tree(proc.pid)
            total = sum(pss_mb(p) for p in tree)
            if total > peak:
                peak, processes = total, len(tree)
            time.sleep(sample_every)
        stderr = proc.communicate()[1]
        if proc.returncode != 0:
            raise SystemExit(f"error: {script}.py exited with {proc.returncode}: {stderr.strip()[-500:]}")
        run_dir = os.path.join(cwd, "runs", os.listdir(os.path.join(cwd, "runs"))[0])
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
        with open(os.path.join(run_dir, "progress.csv")) as f:
            rows = list(csv.DictReader(f))
    return {
        "train_seconds": summary["train_seconds"],
        "steady_sps": steady_sps(rows),
        "num_envs": config["num_envs"],
        "peak_pss_mb": peak,
        "peak_processes": processes,
    }


def steady_sps(rows: list) -> float:
    """Env steps per second between the first and the last progress.csv row (start-up and the first update left
    out), from each row's global_step and sps (global_step / seconds since training started); NaN with fewer
    than two rows."""
    if len(rows) < 2:
        return float("nan")
    (s0, r0), (s1, r1) = [(float(r["global_step"]), float(r["sps"])) for r in (rows[0], rows[-1])]
    return (s1 - s0) / (s1 / r1 - s0 / r0)


def default_num_envs(script: str, env_id: str, root: str = ROOT) -> int:
    """The script's own number of envs for env_id (its env_layout)."""
    spec = importlib.util.spec_from_file_location(script, os.path.join(root, f"{script}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.env_layout(module.Args(env_id=env_id)).num_envs


def paired(script, env_id: str, steps: int, repeats: int, num_envs=None, root=ROOT, vector_env="auto", seed=0) -> dict:
    """Raw stepping and the script alternate (raw, run, raw, ..., raw); each run's steady SPS is divided by the
    mean of the raw measurements just before and after it, so that the machine's drift cancels."""
    n = num_envs or default_num_envs(script, env_id, root)
    raw = [raw_sps(env_id, n, steps // 2, vector_env, seed)["sps"]]
    runs = []
    for _ in range(repeats):
        runs.append(run_script(script, env_id, steps, n, root, sample_every=0)["steady_sps"])
        raw.append(raw_sps(env_id, n, steps // 2, vector_env, seed)["sps"])
    ratios = [sps / ((raw[i] + raw[i + 1]) / 2) for i, sps in enumerate(runs)]
    return {
        "script": script,
        "env_id": env_id,
        "num_envs": n,
        "steps": steps,
        "steady_sps": runs,
        "raw_sps": raw,
        "ratios": ratios,
        "ratio_median": float(np.median(ratios)),
    }


def end_to_end(script: str, env_id: str, steps: int, num_envs=None, root: str = ROOT, sample_every=0.5) -> dict:
    short = run_script(script, env_id, steps, num_envs, root, sample_every)
    long = run_script(script, env_id, 2 * steps, num_envs, root, sample_every)
    return {
        "script": script,
        "env_id": env_id,
        "num_envs": long["num_envs"],
        "steps": steps,
        "sps": steps / (long["train_seconds"] - short["train_seconds"]),
        "peak_pss_mb": round(long["peak_pss_mb"]),
        "peak_processes": long["peak_processes"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="SafetyPointGoal1-v0")
    parser.add_argument("--num-envs", type=int, default=None, help="default: 8, or each script's own with --scripts")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--vector-env", choices=["auto", "sync", "async"], default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scripts", default="", help="comma-separated scripts to time end to end, e.g. ppo,cppo")
    parser.add_argument("--root", default=ROOT, help="the folder holding the scripts (default: this repository)")
    parser.add_argument("--sample-every", type=float, default=0.5, help="seconds between PSS samples (0: none)")
    parser.add_argument(
        "--paired",
        type=int,
        default=0,
        help="with --scripts: this many runs per script, each "
        "between two raw measurements of --steps/2 (see `paired`); no memory sampling",
    )
    a = parser.parse_args()
    if a.paired and a.scripts:
        for script in filter(None, a.scripts.split(",")):
            result = paired(script, a.env_id, a.steps, a.paired, a.num_envs, a.root, a.vector_env, a.seed)
            print(json.dumps(result), flush=True)
        raise SystemExit(0)
    if not a.scripts:
        print(json.dumps(raw_sps(a.env_id, a.num_envs or 8, a.steps, a.vector_env, a.seed)), flush=True)
    raw = {}  # num_envs -> raw SPS, measured just before the first script that uses it
    for script in filter(None, a.scripts.split(",")):
        result = end_to_end(script, a.env_id, a.steps, a.num_envs, a.root, a.sample_every)
        n = result["num_envs"]
        if n not in raw:
            raw[n] = raw_sps(a.env_id, n, a.steps, a.vector_env, a.seed)["sps"]
        print(json.dumps({**result, "raw_sps": raw[n], "ratio": result["sps"] / raw[n]}), flush=True)
