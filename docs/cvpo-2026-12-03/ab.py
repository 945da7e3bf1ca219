"""Alternate raw stepping and cvpo.py from several roots: raw, A, raw, B, raw, ... ; steady SPS from the row at 12,000."""
import csv, glob, json, os, subprocess, sys
sys.path.insert(0, "/work/main/benchmarks")
import env_sps
PY = sys.executable
steps, repeats, roots = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
extra = sys.argv[4:]
raw, runs = [env_sps.raw_sps("SafetyPointGoal1-v0", 2, steps // 2)["sps"]], []
out = {}
for k in range(repeats):
    for r in roots:
        d = f"/tmp/s19/ab/{os.path.basename(r)}{k}"
        os.makedirs(d, exist_ok=True)
        subprocess.run([PY, f"{r}/cvpo.py", "--total-timesteps", str(steps), "--eval-episodes", "0", "--seed", "11", *extra], cwd=d, check=True, stdout=subprocess.DEVNULL)
        rows = [x for x in csv.DictReader(open(sorted(glob.glob(f"{d}/runs/*/progress.csv"))[-1])) if int(x["global_step"]) >= 12000]
        sps = env_sps.steady_sps(rows)
        raw.append(env_sps.raw_sps("SafetyPointGoal1-v0", 2, steps // 2)["sps"])
        out.setdefault(r, []).append(round(sps / ((raw[-2] + raw[-1]) / 2), 3))
        print(r, round(sps, 1), raw[-2:], out[r], flush=True)
print(json.dumps({"raw": raw, "ratios": out}))
