# lammax.py PROGRESS.csv...: per run, the largest 1e5-step block mean of the multiplier and of its integral, the largest block cost after the first, and the last-10% return
import csv, sys
for f in sys.argv[1:]:
    rows = list(csv.DictReader(open(f)))
    b = {}
    for r in rows:
        b.setdefault((int(r["global_step"]) - 1) // 100000, []).append(r)
    m = lambda k, rs: sum(float(r[k]) for r in rs) / len(rs)
    lam = [m("lagrange_multiplier", v) for k, v in sorted(b.items())]
    pi = [m("pid_i", v) for k, v in sorted(b.items())]
    cost = [m("episodic_cost", v) for k, v in sorted(b.items())]
    n = len(rows); last = rows[int(n * 0.9):]
    print(f.split("/")[-2][:42], f"maxλblock {max(lam):.2f} maxI {max(pi):.2f} maxcost {max(cost[1:]):.1f} last10% ret {m('episodic_return', last):.2f}")
