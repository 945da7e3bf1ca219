"""Dyna-CPPO against CPPO, per seed: the table of docs/dyna-2026-11-26/README.md.
Usage: python compare.py RUN_DIR...   (run folders of cppo and dyna_cppo; paired by seed)"""
import csv
import json
import os
import sys

import numpy as np

CPPO_1E6_RETURN = 2.15  # CPPO, seed 1, last 10% of its 1e6-step run (docs/throughput-2026-11-26/runs/pg1-2envs)


def load(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(run_dir, "progress.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    summary = {}
    if os.path.exists(os.path.join(run_dir, "summary.json")):
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
    col = lambda k: np.array([float(r[k]) for r in rows]) if k in rows[0] else np.full(len(rows), np.nan)
    return config, col, summary


def describe(run_dir):
    config, col, summary = load(run_dir)
    step, ret, cost = col("global_step"), col("episodic_return"), col("episodic_cost")
    tail = step > 0.9 * step[-1]
    out = {"algo": config["exp_name"], "seed": config["seed"], "steps": int(step[-1]),
           "return": np.nanmean(ret[tail]), "cost": np.nanmean(cost[tail]),
           "cumulative_cost": col("cumulative_cost")[-1], "wall_s": summary.get("train_seconds", np.nan),
           "above_limit": int((cost > config["cost_limit"]).sum()), "updates": len(step)}
    if not np.isnan(col("model/skill")).all():  # a Dyna run
        thirds = np.array_split(np.arange(len(step)), 3)
        for key in ("model/skill", "model/reward_skill", "model/cost_skill"):
            out[key] = "/".join(f"{np.nanmean(col(key)[i]):.2f}" for i in thirds)
        out["imagined_on"] = np.nanmean(col("imagined/on"))
        out["imagined_kl"] = np.nanmean(col("imagined/kl" if "imagined/kl" in rows[0] else "imagined/approx_kl"))
        out["time_model"] = np.nanmean(col("time_model"))
        out["time_imagination"] = np.nanmean(col("time_imagination")[col("imagined/on") == 1])
    # the first step at which the return, averaged over a window of 10 updates, reaches CPPO's 1e6 return
    smooth = np.convolve(np.nan_to_num(ret), np.ones(10) / 10, mode="valid")
    reached = np.flatnonzero(smooth >= CPPO_1E6_RETURN)
    out["reached_at"] = int(step[9:][reached[0]]) if len(reached) else None
    out["best_smoothed_return"] = smooth.max()
    return out


if __name__ == "__main__":
    runs = [describe(d) for d in sys.argv[1:]]
    print("| seed | algo | return (last 10%) | cost (last 10%) | cumulative cost | updates above 25 | wall time (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(runs, key=lambda r: (r["seed"], r["algo"])):
        print(f"| {r['seed']} | {r['algo']} | {r['return']:.2f} | {r['cost']:.1f} | {r['cumulative_cost']:.0f} | "
              f"{r['above_limit']}/{r['updates']} | {r['wall_s']:.0f} |")
    print()
    print("| seed | model/skill (thirds) | model/reward_skill | model/cost_skill | imagined on | imagined KL | "
          "time_model (s) | time_imagination (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(runs, key=lambda r: r["seed"]):
        if "model/skill" in r:
            print(f"| {r['seed']} | {r['model/skill']} | {r['model/reward_skill']} | {r['model/cost_skill']} | "
                  f"{r['imagined_on']:.2f} | {r['imagined_kl']:.4f} | {r['time_model']:.1f} | "
                  f"{r['time_imagination']:.1f} |")
    print()
    print(f"| seed | algo | first step with a 10-update mean return >= {CPPO_1E6_RETURN} | best 10-update mean |")
    print("|---|---|---|---|")
    for r in sorted(runs, key=lambda r: (r["seed"], r["algo"])):
        print(f"| {r['seed']} | {r['algo']} | {r['reached_at']} | {r['best_smoothed_return']:.2f} |")
