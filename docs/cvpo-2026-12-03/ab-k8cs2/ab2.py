"""Alternate raw stepping and cvpo.py with different flag sets: raw, A, raw, B, raw, ... ; steady SPS from the row at 12,000."""
import csv, glob, json, os, subprocess, sys
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))  # the repository
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import env_sps
PY = sys.executable
steps, repeats = int(sys.argv[1]), int(sys.argv[2])
variants = {"default": [], "k8cs2": ["--critic-steps", "2", "--num-sampled-actions", "8"]}
raw, out = [env_sps.raw_sps("SafetyPointGoal1-v0", 2, steps // 2)["sps"]], {}
for k in range(repeats):
    for name, flags in variants.items():
        d = f"/tmp/ab-k8cs2/{name}{k}"
        os.makedirs(d, exist_ok=True)
        subprocess.run([PY, os.path.join(ROOT, "cvpo.py"), "--total-timesteps", str(steps), "--eval-episodes", "0", "--seed", "11", *flags], cwd=d, check=True, stdout=subprocess.DEVNULL)
        rows = [x for x in csv.DictReader(open(sorted(glob.glob(f"{d}/runs/*/progress.csv"))[-1])) if int(x["global_step"]) >= 12000]
        sps = env_sps.steady_sps(rows)
        raw.append(env_sps.raw_sps("SafetyPointGoal1-v0", 2, steps // 2)["sps"])
        out.setdefault(name, []).append(round(sps / ((raw[-2] + raw[-1]) / 2), 3))
        print(name, round(sps, 1), raw[-2:], out[name], flush=True)
print(json.dumps({"raw": raw, "ratios": out}))
