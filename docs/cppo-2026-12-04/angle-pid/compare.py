"""Compare runs at a step cutoff: the last 10% of the steps up to it, and the cumulative cost there.
usage: compare.py CUTOFF progress.csv..."""
import csv, sys, numpy as np
cut = float(sys.argv[1])
for f in sys.argv[2:]:
    r = [x for x in csv.DictReader(open(f)) if float(x["global_step"]) <= cut]
    if not r: continue
    last = float(r[-1]["global_step"])
    tail = [x for x in r if float(x["global_step"]) > 0.9 * last]
    g = lambda k, rows: np.nanmean([float(x[k]) for x in rows if x.get(k, "") not in ("", "nan")])
    lam = g("lagrange_multiplier", tail) if "lagrange_multiplier" in r[0] else float("nan")
    print(f"{f.split('/')[-2][:45]:45s} step {last:9.0f} ret {g('episodic_return', tail):6.2f} cost {g('episodic_cost', tail):6.2f} "
          f"cum {float(r[-1]['cumulative_cost'])/1e3:6.1f}k rec {g('cppo/recovery', r):.2f} lam {lam:.2f}")
