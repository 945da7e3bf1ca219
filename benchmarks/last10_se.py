"""Each seed's last-10% cost on the navigation tasks and its standard error (the progress rows' std / sqrt(rows)),
for the newest finished run of each algo x env x seed in docs/benchmark/runs, as results.md takes them.

Usage (from the repo root): python benchmarks/last10_se.py [runs_dir]
"""

import csv
import glob
import os
import sys

import numpy as np

runs_dir = sys.argv[1] if len(sys.argv) > 1 else "docs/benchmark/runs"
newest = {}
for d in glob.glob(os.path.join(runs_dir, "*__*__*__*")):
    env, algo, seed, t = os.path.basename(d).split("__")
    if os.path.exists(os.path.join(d, "summary.json")) and int(t) > newest.get((env, algo, seed), ("", -1))[1]:
        newest[(env, algo, seed)] = (d, int(t))
for (env, algo, seed), (d, _) in sorted(newest.items()):
    if "Goal" not in env and "Circle" not in env:
        continue
    with open(os.path.join(d, "progress.csv")) as f:
        rows = list(csv.DictReader(f))
    total = int(rows[-1]["global_step"])
    cost = np.array([float(r["episodic_cost"]) for r in rows if int(r["global_step"]) > 0.9 * total])
    cost = cost[np.isfinite(cost)]
    se = cost.std(ddof=1) / np.sqrt(len(cost))
    print(f"{env:24s} {algo:15s} seed {seed}: {len(cost):3d} rows, last-10% cost {cost.mean():6.1f}, SE {se:5.1f}")
