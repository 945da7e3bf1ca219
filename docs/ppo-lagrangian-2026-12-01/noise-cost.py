"""Episodic cost on SafetyPointGoal1 of actions a = mean + std*noise with mean 0, for a few stds (no learning)."""
import sys, numpy as np, safety_gymnasium
env = safety_gymnasium.make("SafetyPointGoal1-v0")
rng = np.random.default_rng(0)
for std in [float(s) for s in sys.argv[1].split(",")]:
    costs, rets, incost0 = [], [], []
    for ep in range(int(sys.argv[2])):
        obs, _ = env.reset(seed=100 + ep)
        c = r = 0.0; first = None
        for t in range(1000):
            a = np.clip(std * rng.standard_normal(2), -1, 1)
            obs, rew, cost, term, trunc, info = env.step(a)
            if t == 0: first = cost
            c += cost; r += rew
            if term or trunc: break
        costs.append(c); rets.append(r); incost0.append(first)
    print(f"std {std}: cost mean {np.mean(costs):.1f} median {np.median(costs):.1f} max {np.max(costs):.0f} "
          f"zero-cost eps {np.mean(np.array(costs)==0):.2f} cost at step 0 {np.mean(incost0):.2f} return {np.mean(rets):.2f}", flush=True)
    print("  per episode:", " ".join(f"{x:.0f}" for x in costs), flush=True)
