"""CVPO's steady SPS on PointGoal1 against raw stepping, paired in time: raw, run, raw, run, raw, run, raw.
Steady SPS: from the progress row at 12,000 steps (updates have started at 10,000) to the last row."""
import csv, glob, json, os, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../benchmarks"))
import env_sps
ROOT, PY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), sys.executable
steps, repeats = int(sys.argv[1]), int(sys.argv[2])
raw, runs = [env_sps.raw_sps("SafetyPointGoal1-v0", 2, steps // 2)["sps"]], []
for k in range(repeats):
    d = f"tp{k}"
    os.makedirs(d, exist_ok=True)
    subprocess.run([PY, f"{ROOT}/cvpo.py", "--total-timesteps", str(steps), "--eval-episodes", "0", "--seed", "11"], cwd=d, check=True, stdout=subprocess.DEVNULL)
    rows = list(csv.DictReader(open(glob.glob(f"{d}/runs/*/progress.csv")[-1])))
    rows = [r for r in rows if int(r["global_step"]) >= 12000]
    runs.append(env_sps.steady_sps(rows))
    raw.append(env_sps.raw_sps("SafetyPointGoal1-v0", 2, steps // 2)["sps"])
ratios = [s / ((raw[i] + raw[i + 1]) / 2) for i, s in enumerate(runs)]
print(json.dumps({"steady_sps": runs, "raw_sps": raw, "ratios": ratios}))
