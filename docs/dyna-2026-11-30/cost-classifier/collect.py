import os
import numpy as np, safety_gymnasium, sys
env = safety_gymnasium.make("SafetyPointGoal1-v0")
R, T = int(sys.argv[1]), 4000
rng = np.random.default_rng(0)
obs, _ = env.reset(seed=0)
lo, hi = env.action_space.low, env.action_space.high
out = {k: [] for k in ("obs", "act", "rew", "cost", "next_obs", "done")}
# a smooth random policy (AR(1) actions) so the agent actually moves and reaches goals/hazards
a = np.zeros(2)
for r in range(R):
    buf = {k: [] for k in out}
    for t in range(T):
        a = 0.8 * a + 0.6 * rng.standard_normal(2)
        act = np.clip(a, lo, hi)
        nxt, rew, cost, term, trunc, info = env.step(act)
        done = term or trunc
        for k, v in zip(buf, (obs, act, rew, cost, nxt, done)):
            buf[k].append(v)
        obs = nxt
        if done:
            obs, _ = env.reset()
    for k in out:
        out[k].append(np.array(buf[k], dtype=np.float32)[:, None])  # [T, 1, ...]
    print("rollout", r, "rew", np.sum(buf["rew"]), "cost", np.sum(buf["cost"]), flush=True)
np.savez(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.npz"), **{k: np.stack(v) for k, v in out.items()})
