import csv, glob
def last10(f):
    r = list(csv.DictReader(open(f))); n = int(r[-1]["global_step"])
    t = [x for x in r if int(x["global_step"]) > 0.9 * n]
    g = lambda k: sum(float(x[k]) for x in t) / len(t)
    return g("episodic_return"), g("episodic_cost"), float(r[-1]["cumulative_cost"]) / 1000, n
pat = {"lagmb": "docs/cppo-2026-12-05/runs/SafetyPointGoal1-v0__lagmb__{s}__*/progress.csv",
       "plag": "docs/cppo-2026-12-05/runs/SafetyPointGoal1-v0__plag__{s}__*/progress.csv",
       "hppl": "docs/cppo-2026-12-05/runs/SafetyPointGoal1-v0__hppl__{s}__*/progress.csv",
       "sp0.8": "docs/ppo-lagrangian-2026-12-04/setpoint/SafetyPointGoal1-v0__sp0.8__{s}__*/progress.csv"}
for name in ("hppl", "lagmb", "plag"):
    cells, rets, cums = [], [], []
    for s in (11, 12, 13, 14, 15):
        fs = glob.glob(pat[name].format(s=s)) or (glob.glob(pat["sp0.8"].format(s=s)) if name == "plag" else [])
        fs = fs or glob.glob(pat[name].format(s=s).replace("docs/cppo-2026-12-05/", ""))
        if not fs: cells.append("not run"); continue
        ret, cost, cum, n = last10(fs[0]); rets.append(ret); cums.append(cum)
        cells.append(f"{ret:.2f} / {cost:.1f} ({cum:.1f}k)" + ("" if n >= 1000000 else f" at {n}"))
    print(f"| `{name}` | " + " | ".join(cells) + f" | {sum(rets)/len(rets):.2f} | {sum(cums)/len(cums):.1f}k |")
