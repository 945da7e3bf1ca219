"""Each seed's last-10% cost on the navigation tasks and its standard error (the progress rows' std / sqrt(rows)),
for the runs results.md takes: the newest finished run of each algo x env x seed (report.py's selection).

Usage (from the repo root): python benchmarks/last10_se.py [--out docs/benchmark]
"""

import argparse

import numpy as np
from report import final_rows, load_runs, newest_per_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="docs/benchmark", help="the benchmark folder (its runs/ holds the run folders)")
finished, _ = load_runs(parser.parse_args().out)
runs, _ = newest_per_seed(finished)
for run in sorted(runs, key=lambda run: (run["env"], run["algo"], run["seed"])):
    if "Goal" not in run["env"] and "Circle" not in run["env"]:
        continue
    cost = np.array([r["episodic_cost"] for r in final_rows(run["rows"])])
    se = cost.std(ddof=1) / np.sqrt(len(cost))
    where = f"{run['env']:24s} {run['algo']:15s} seed {run['seed']}"
    print(f"{where}: {len(cost):3d} rows, last-10% cost {cost.mean():6.1f}, SE {se:5.1f}")
