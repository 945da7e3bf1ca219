# Session 42 (run from the repository root): last-10% return / cost (cumulative) per seed, 1e6, and the means.
import csv, glob
def tail(f):
    rows = list(csv.DictReader(open(f)))
    t = [r for r in rows if int(r["global_step"]) > 0.9 * int(rows[-1]["global_step"])]
    ret, cost = (sum(float(r[k]) for r in t) / len(t) for k in ("episodic_return", "episodic_cost"))
    return ret, cost, float(rows[-1]["cumulative_cost"]) / 1000, int(rows[-1]["global_step"])
for name, pat in (("hppl", "docs/cppo-2026-12-05/runs/SafetyPointGoal1-v0__hppl__{s}__*/progress.csv"),
                  ("ar8", "docs/cppo-2026-12-06/runs/SafetyPointGoal1-v0__ar8__{s}__*/progress.csv")):
    res = {}
    for s in (11, 12, 13, 14, 15):
        g = glob.glob(pat.format(s=s))
        if g: res[s] = tail(g[0])
    if not res: continue
    cells = " | ".join(f"s{s} {r:.2f} / {c:.1f} ({k:.1f}k){'' if st == 1000000 else ' @' + str(st)}" for s, (r, c, k, st) in res.items())
    n = len(res)
    print(f"{name}: {cells} | mean {sum(v[0] for v in res.values())/n:.2f} / {sum(v[1] for v in res.values())/n:.1f}, cum {sum(v[2] for v in res.values())/n:.1f}k (n={n})")
