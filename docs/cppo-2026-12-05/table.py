import csv, glob
# Session 41's table (run from the repository's root): last-10% return / cost (cumulative) per seed, from run folders.
RUNS = "docs/cppo-2026-12-05/runs/SafetyPointGoal1-v0__{name}__{s}__*/progress.csv"
PLAG_12 = "docs/ppo-lagrangian-2026-12-04/setpoint/SafetyPointGoal1-v0__sp0.8__12__*/progress.csv"  # the same rows
for name in ("hppl", "lagmb", "plag"):
    cells, rets, cums = [], [], []
    for s in (11, 12, 13, 14, 15):
        f = (glob.glob(RUNS.format(name=name, s=s)) or glob.glob(PLAG_12 if (name, s) == ("plag", 12) else ""))[0]
        rows = list(csv.DictReader(open(f)))
        tail = [r for r in rows if int(r["global_step"]) > 0.9 * int(rows[-1]["global_step"])]
        ret, cost = (sum(float(r[k]) for r in tail) / len(tail) for k in ("episodic_return", "episodic_cost"))
        cum = float(rows[-1]["cumulative_cost"]) / 1000
        rets.append(ret), cums.append(cum), cells.append(f"{ret:.2f} / {cost:.1f} ({cum:.1f}k)")
    print(f"| `{name}` | " + " | ".join(cells) + f" | {sum(rets) / len(rets):.2f} | {sum(cums) / len(cums):.1f}k |")
