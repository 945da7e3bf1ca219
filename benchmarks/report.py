"""Aggregate benchmark run folders into DIR/results.md (tables) and DIR/curves.png (learning curves).

Usage: python benchmarks/report.py --out DIR   (reads DIR/runs/*/{config.json,progress.csv,summary.json}
and DIR/throughput/*.json written by benchmarks/env_sps.py)

Only finished runs (with a summary.json) count; unfinished folders (interrupted, or still running) are listed
under the results table. Of several finished runs of one algo x env x seed (an older commit and a newer one, or a
--no-resume rerun) the newest, by the unix time that ends the folder's name, is kept, and the number left out is
said under the table. Hidden folders (runs/.locks, runs/.interrupted of benchmarks/resume.py) are not read.
"""

import argparse
import csv
import glob
import json
import os
import warnings
from collections import defaultdict

import numpy as np

FINAL_FRACTION = 0.1  # "final" return / cost of a run: the mean over its progress rows in the last 10% of steps
SMOOTH_UPDATES = 10  # curves.png: a trailing mean over this many updates (a tenth of the run, if that is fewer)
MARK = "†"  # on the code cell of a results row whose runs are not all one committed version of the script
BUDGET_MARK = "‡"  # on the steps cell of a results row whose runs were given different total_timesteps
# Published references (return / cost), quoted with their budget: OmniSafe's benchmark at 1e7 steps, cost limit 25
# (benchmarks/on-policy/README.md, Table 2); the CPPO paper (arXiv:2305.14216, Fig. 3) on the original Safety Gym at
# 1e7 steps and on the mujoco Point-Circle of Achiam et al. 2017 (limit 5, not Safety-Gymnasium's) at 2e5; PPOLag on
# PointCircle1 from Safety-Gymnasium's benchmark figure (benchmarks/first_order_pointcircle1_1e7.png, OmniSafe
# defaults, limit 25); CVPO on PointGoal1 from FSRL's figure (docs/_static/images/safety-gymnasium-navigation/,
# training rollouts, limit 25). "about": read off a figure. No CVPO number on PointCircle1 was found.
REFERENCES = {
    ("ppo", "SafetyPointGoal1-v0"): "25.44 / 55.72 (OmniSafe, 1e7 steps)",
    ("trpo", "SafetyPointGoal1-v0"): "27.20 / 45.88 (OmniSafe, 1e7 steps)",
    ("ppo_lagrangian", "SafetyPointGoal1-v0"): "12.96 / 25.80 (OmniSafe, 1e7 steps)",
    ("cppo", "SafetyPointGoal1-v0"): "about 23 / about 25 (CPPO paper, Safety Gym, 1e7 steps)",
    ("ppo", "SafetyCarGoal1-v0"): "33.41 / 58.06 (OmniSafe, 1e7 steps)",
    ("ppo_lagrangian", "SafetyCarGoal1-v0"): "13.27 / 21.72 (OmniSafe, 1e7 steps)",
    ("ppo", "SafetyPointButton1-v0"): "27.03 / 152.48 (OmniSafe, 1e7 steps)",
    ("ppo_lagrangian", "SafetyPointButton1-v0"): "4.60 / 20.8 (OmniSafe, 1e7 steps)",
    ("ppo", "SafetyHalfCheetahVelocity-v1"): "6921 / 919 (OmniSafe, 1e7 steps)",
    ("trpo", "SafetyHalfCheetahVelocity-v1"): "6490 / 734 (OmniSafe, 1e7 steps)",
    ("ppo_lagrangian", "SafetyHalfCheetahVelocity-v1"): "2946 / 3.44 (OmniSafe, 1e7 steps)",
    ("ppo_lagrangian", "SafetyPointCircle1-v0"): "about 47 / about 23 (Safety-Gymnasium figure, 1e7 steps)",
    ("cppo", "SafetyPointCircle1-v0"): "about 85 / about 5.5 (CPPO paper, mujoco Point-Circle, limit 5, 2e5 steps)",
    ("cvpo", "SafetyPointGoal1-v0"): "about 23 / about 25 (FSRL figure, training rollouts, 5e6 steps)",
}


def run_time(run_dir: str) -> int:
    """The unix time that ends a run folder's name (ENV__ALGO__SEED__TIME); -1 if it does not end in one."""
    tail = os.path.basename(run_dir).rsplit("__", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def load_runs(out_dir: str) -> tuple:
    """(finished, unfinished). finished: one dict per run folder with a summary.json and progress rows: algo, env,
    seed, config, rows (floats), summary, name (runs/FOLDER), time (run_time). unfinished: the runs/FOLDER names
    of the folders without a summary.json (interrupted, or still running)."""
    finished, unfinished = [], []
    for run_dir in sorted(glob.glob(os.path.join(out_dir, "runs", "*"))):
        name = os.path.relpath(run_dir, out_dir)
        summary_path = os.path.join(run_dir, "summary.json")
        if not os.path.exists(summary_path):
            unfinished.append(name)
            continue
        progress = os.path.join(run_dir, "progress.csv")
        if not os.path.exists(progress):
            continue
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
        with open(progress, newline="") as f:
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        if not rows:
            continue
        with open(summary_path) as f:
            summary = json.load(f)
        finished.append(
            {
                "algo": config["exp_name"],
                "env": config["env_id"],
                "seed": config["seed"],
                "config": config,
                "rows": rows,
                "summary": summary,
                "name": name,
                "time": run_time(run_dir),
            }
        )
    return finished, unfinished


def newest_per_seed(runs: list) -> tuple:
    """(kept, older): of the runs of each algo x env x seed the newest (by folder time, then name) is kept."""
    groups = defaultdict(list)
    for run in runs:
        groups[(run["algo"], run["env"], run["seed"])].append(run)
    kept, older = [], []
    for group in groups.values():
        group.sort(key=lambda run: (run["time"], run["name"]))
        kept.append(group[-1])
        older += group[:-1]
    return kept, sorted(older, key=lambda run: run["name"])


EVAL_MODES = ("stochastic", "deterministic")


def eval_numbers(summary: dict) -> dict:
    """eval_{mode}_{return,cost} from summary.json; older runs evaluated the mean action only, as eval_{return,cost}."""
    out = {}
    for mode in EVAL_MODES:
        for what in ("return", "cost"):
            old_key = f"eval_{what}" if mode == "deterministic" else None
            out[f"{mode}_{what}"] = summary.get(f"eval_{mode}_{what}", summary.get(old_key, np.nan))
    return out


def short_commit(config: dict) -> str:
    """The run's code_commit in 7 characters (abc1234, abc1234-dirty), "none" outside git, "unknown" for a run
    from before config.json recorded it."""
    if "code_commit" not in config:
        return "unknown"
    commit = config["code_commit"]
    if not commit:
        return "none"
    return commit[:7] + ("-dirty" if commit.endswith("-dirty") else "")


def updates_above_limit(rows: list, config: dict) -> float:
    """Progress rows (updates; for cvpo, --log-every intervals) whose episodic cost is above the cost limit: the
    row's own `cost_limit` column when progress.csv has one (cppo and dyna_cppo log the limit in force, which
    --cost-limit-start anneals), else config.json's cost_limit. NaN rows (no episode yet) are not counted. NaN if
    neither records a limit."""
    if "cost_limit" in rows[0]:
        return sum(
            r["episodic_cost"] > r["cost_limit"]
            for r in rows
            if np.isfinite(r["episodic_cost"]) and np.isfinite(r["cost_limit"])
        )
    limit = config.get("cost_limit")
    if limit is None:
        return np.nan
    return sum(r["episodic_cost"] > limit for r in rows if np.isfinite(r["episodic_cost"]))


def final_rows(rows: list) -> list:
    """The last 10% of steps: the rows logged after 90% of the run's steps that saw an episode end."""
    last = rows[-1]["global_step"]
    return [r for r in rows if r["global_step"] > (1 - FINAL_FRACTION) * last and np.isfinite(r["episodic_return"])]


def run_finals(run: dict) -> dict:
    rows = run["rows"]
    tail = final_rows(rows)  # several rollouts, so less noisy than the last row
    return {
        **eval_numbers(run["summary"]),
        "cumulative_cost": rows[-1].get("cumulative_cost", np.nan),
        "updates_above_limit": updates_above_limit(rows, run["config"]),
        "updates": len(rows),
        "steps": rows[-1]["global_step"],
        "return": np.mean([r["episodic_return"] for r in tail]) if tail else np.nan,
        "cost": np.mean([r["episodic_cost"] for r in tail]) if tail else np.nan,
        "cost_rate": rows[-1]["cumulative_cost"] / rows[-1]["global_step"] if "cumulative_cost" in rows[-1] else np.nan,
        "sps": rows[-1]["sps"],
        "wall": run["summary"].get("train_seconds", np.nan),
        "num_envs": run["config"].get("num_envs"),
        "total_timesteps": run["config"].get("total_timesteps"),
        "code": short_commit(run["config"]),
    }


def mean_std(values, fmt: str) -> str:
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return "n/a"
    return f"{np.nanmean(values):{fmt}} ± {np.nanstd(values):{fmt}}"


def code_cell(codes: list) -> str:
    """The short code_commits of a cell's runs: "abc1234" when all are one committed version; otherwise each with
    its number of runs, and MARK (also for a single -dirty, none or unknown version)."""
    counts = {code: codes.count(code) for code in sorted(set(codes))}
    if len(counts) == 1 and all(c not in ("none", "unknown") and not c.endswith("-dirty") for c in counts):
        return codes[0]
    return ", ".join(f"{code} ×{n}" for code, n in counts.items()) + f" {MARK}"


def updates_cell(finals: list) -> str:
    """Updates above the cost limit, mean ± std over seeds, of how many updates the runs had."""
    updates = sorted({f["updates"] for f in finals})
    of = f"{updates[0]}" if len(updates) == 1 else f"{updates[0]}–{updates[-1]}"
    cell = mean_std([f["updates_above_limit"] for f in finals], ".1f")
    return cell if cell == "n/a" else f"{cell} of {of}"


def results_table(runs: list) -> list:
    groups = defaultdict(list)
    for run in runs:
        groups[(run["algo"], run["env"])].append(run_finals(run))
    lines = [
        "| algo | env | seeds | steps | final return | final cost | cumulative cost | updates above limit | cost rate "
        "| SPS | wall (s) | code | published (return / cost) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (algo, env), finals in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        steps = "/".join(f"{s:,}" for s in sorted({int(f["steps"]) for f in finals}))
        if len({json.dumps(f["total_timesteps"]) for f in finals}) > 1:
            steps += f" {BUDGET_MARK}"
        cells = [
            mean_std([f["return"] for f in finals], ".2f"),
            mean_std([f["cost"] for f in finals], ".2f"),
            mean_std([f["cumulative_cost"] for f in finals], ",.0f"),
            updates_cell(finals),
            mean_std([f["cost_rate"] for f in finals], ".4f"),
            mean_std([f["sps"] for f in finals], ".0f"),
            mean_std([f["wall"] for f in finals], ".0f"),
            code_cell([f["code"] for f in finals]),
        ]
        lines.append(
            f"| {algo} | {env} | {len(finals)} | {steps} | "
            + " | ".join(cells)
            + f" | {REFERENCES.get((algo, env), '')} |"
        )
    return lines


def evaluation_table(runs: list) -> list:
    """The final evaluation of each (algo, env): stochastic (sampled actions, the policy that was trained and the
    one the cost limit is for) and deterministic (mean action), mean ± std over seeds."""
    groups = defaultdict(list)
    for run in runs:
        groups[(run["algo"], run["env"])].append(run_finals(run))
    lines = [
        "| algo | env | seeds | return (stochastic) | cost (stochastic) | return (deterministic) | "
        "cost (deterministic) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (algo, env), finals in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = [
            mean_std([f[f"{mode}_{what}"] for f in finals], ".2f") for mode in EVAL_MODES for what in ("return", "cost")
        ]
        lines.append(f"| {algo} | {env} | {len(finals)} | " + " | ".join(cells) + " |")
    return lines


def per_run_table(runs: list) -> list:
    """One row per run: the last 10% of steps, the cost paid during training, and how often the limit was broken."""
    lines = [
        "| algo | env | seed | steps | return (last 10%) | cost (last 10%) | cumulative cost | updates above limit "
        "| code |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in sorted(runs, key=lambda r: (r["env"], r["algo"], r["seed"])):
        f = run_finals(run)
        above = "n/a" if np.isnan(f["updates_above_limit"]) else f"{f['updates_above_limit']:.0f}"
        lines.append(
            f"| {run['algo']} | {run['env']} | {run['seed']} | {int(f['steps']):,} | {f['return']:.2f} | "
            f"{f['cost']:.2f} | {f['cumulative_cost']:,.0f} | {above} / {f['updates']} | {f['code']} |"
        )
    return lines


def throughput_table(runs: list, out_dir: str) -> list:
    raw = {}
    for path in glob.glob(os.path.join(out_dir, "throughput", "*.json")):
        with open(path) as f:
            for line in f:
                if line.strip():
                    m = json.loads(line)
                    raw.setdefault((m["env_id"], m["num_envs"]), []).append(m["sps"])
    if not raw:
        return []
    groups = defaultdict(list)
    for run in runs:
        f = run_finals(run)
        groups[(run["algo"], run["env"], f["num_envs"])].append(f["sps"])
    lines = [
        "| algo | env | num_envs | end-to-end SPS | raw env SPS (random actions) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for (algo, env, n), sps in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if (env, n) in raw:
            r = float(np.mean(raw[(env, n)]))
            lines.append(f"| {algo} | {env} | {n} | {np.mean(sps):.0f} | {r:.0f} | {np.mean(sps) / r:.2f} |")
    return lines


def smooth(values, window: int) -> np.ndarray:
    """Trailing mean over the last `window` values (over all so far at the start)."""
    values = np.asarray(values, dtype=float)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - window, 0)
    return (sums[end] - sums[start]) / (end - start)


def plot_curves(runs: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({run["env"] for run in runs})
    fig, axes = plt.subplots(2, len(envs), figsize=(6 * len(envs), 7), squeeze=False)
    for col, env in enumerate(envs):
        env_runs = [run for run in runs if run["env"] == env]
        for algo in sorted({run["algo"] for run in env_runs}):
            seeds = [run for run in env_runs if run["algo"] == algo]
            grid = np.linspace(0, min(run["rows"][-1]["global_step"] for run in seeds), 100)
            for row, key in enumerate(("episodic_return", "episodic_cost")):
                curves = []
                for run in seeds:
                    points = [(r["global_step"], r[key]) for r in run["rows"] if np.isfinite(r[key])]
                    if points:
                        x, y = zip(*points)
                        window = max(1, min(SMOOTH_UPDATES, len(points) // 10))
                        curves.append(np.interp(grid, x, smooth(y, window), left=np.nan))
                if not curves:
                    continue
                curves = np.array(curves)
                with warnings.catch_warnings():  # grid points before a seed's first episode are NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean, low, high = (f(curves, axis=0) for f in (np.nanmean, np.nanmin, np.nanmax))
                (line,) = axes[row, col].plot(grid, mean, label=f"{algo} ({len(seeds)} seeds)")
                if len(curves) > 1:
                    axes[row, col].fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
        for limit in sorted({run["config"]["cost_limit"] for run in env_runs if "cost_limit" in run["config"]}):
            axes[1, col].axhline(limit, color="k", linestyle="--", linewidth=1, label=f"cost limit {limit:g}")
        axes[0, col].set_title(env)
        axes[0, col].set_ylabel("episodic return")
        axes[1, col].set_ylabel("episodic cost")
        axes[1, col].set_xlabel("environment steps")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.suptitle(
        f"trailing mean over {SMOOTH_UPDATES} updates (a tenth of a shorter run), then mean over seeds; "
        "band: min to max over seeds"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def write_report(out_dir: str, failed: list = ()) -> str:
    finished, unfinished = load_runs(out_dir)
    runs, older = newest_per_seed(finished)
    lines = [
        "# Benchmark results",
        "",
        f"Finished runs only (with a summary.json), the newest of each algo × env × seed. Final return / cost of a "
        f"run: the mean over its progress rows (training episodes) in the last {FINAL_FRACTION:.0%} of steps; "
        "mean ± std over seeds, like every column. Cumulative cost: all cost paid during training. Updates above "
        "limit: progress rows whose episodic cost exceeds the cost limit of that row (the `cost_limit` column "
        "when progress.csv has one, as cppo's and dyna_cppo's do, else the run's `cost_limit`); a row is an "
        "update, except for cvpo, whose rows are `--log-every` intervals of steps. "
        "Cost rate: cumulative training cost / environment steps. "
        "Published numbers are quoted with their own (larger) budgets: compare with care.",
        "",
    ]
    table = results_table(runs) if runs else ["No finished runs found."]
    lines += table
    notes = []
    if runs:
        notes.append(
            f"Code: the runs' `code_commit` (the last commit that changed the script). {MARK}: the cell's runs are "
            "not all one committed version of the script (more than one commit, uncommitted edits `-dirty`, "
            "or none/unknown), so its numbers may mix code: the per-run table shows which run ran which code."
        )
    if any(BUDGET_MARK in line for line in table):
        notes.append(
            f"{BUDGET_MARK}: the cell's runs were given different budgets (`total_timesteps`), so its numbers mix "
            "them: the per-run table shows each run's steps."
        )
    if older:
        notes.append(
            f"Left out: {plural(len(older), 'older finished run')} of an algo × env × seed that has a newer one "
            f"(the newest is kept): {', '.join(run['name'] for run in older)}."
        )
    if unfinished:
        notes.append(
            f"Not counted: {plural(len(unfinished), 'unfinished run folder')} (no summary.json: interrupted, or "
            f"still running): {', '.join(unfinished)}."
        )
    for note in notes:
        lines += ["", note]
    if runs:
        lines += [
            "",
            "## Final evaluation",
            "",
            "Episodes after training (`--eval-episodes` per mode). Stochastic: actions sampled from the policy, "
            "as in training; this is the policy the cost limit constrains. Deterministic: the mean action.",
            "",
        ]
        lines += evaluation_table(runs)
        lines += [
            "",
            "## Per run",
            "",
            "The runs of the tables above. Return and cost: the mean over the progress rows of the last 10% of "
            "steps. Cumulative cost: all cost paid during training. Updates above limit: progress rows whose "
            "episodic cost exceeds that row's cost limit, of all progress rows (for cvpo, `--log-every` "
            "intervals). Code: the run's `code_commit`.",
            "",
        ]
        lines += per_run_table(runs)
    throughput = throughput_table(runs, out_dir)
    if throughput:
        lines += [
            "",
            "## Throughput",
            "",
            "End-to-end SPS (the run's final `sps`) against raw vector-env stepping with random actions "
            "(benchmarks/env_sps.py, same env and num_envs, measured in the same benchmark).",
            "",
        ] + throughput
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {line}" for line in failed]
    path = os.path.join(out_dir, "results.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if runs:
        plot_curves(runs, os.path.join(out_dir, "curves.png"))
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the benchmark folder (holds runs/)")
    args = parser.parse_args()
    failed_path = os.path.join(args.out, "failed.txt")
    failed = []
    if os.path.exists(failed_path):
        with open(failed_path) as f:
            failed = [line.strip() for line in f]
    print(f"wrote {write_report(args.out, failed)}")
