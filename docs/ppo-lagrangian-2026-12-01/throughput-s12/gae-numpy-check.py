import sys, time, numpy as np, torch
sys.path.insert(0, ".")  # run from the repository root
import ppo_lagrangian as pl
torch.set_num_threads(1)
def gae_np(rewards, values, next_values, dones, gamma, lam):
    r, v, nv, d = (x.numpy() for x in (rewards, values, next_values, dones))
    delta = r + np.float32(gamma) * nv - v
    coef = np.float32(gamma * lam) * (np.float32(1.0) - d)
    adv = np.zeros_like(r); last = np.zeros_like(r[0])
    for t in range(r.shape[0] - 1, -1, -1):
        last = delta[t] + coef[t] * last
        adv[t] = last
    adv = torch.from_numpy(adv)
    return adv, adv + values
g = torch.Generator().manual_seed(0)
T, N = 4000, 2
rew = (torch.rand(T, N, generator=g) < 0.03).float(); val = torch.rand(T, N, generator=g) * 3; nval = torch.rand(T, N, generator=g) * 3
done = torch.zeros(T, N); done[999::1000] = 1
for f in (pl.compute_gae, gae_np):
    t = time.perf_counter(); a, r = f(rew, val, nval, done, 0.99, 0.95); print(f.__name__, round(time.perf_counter() - t, 4), "s")
a1, _ = pl.compute_gae(rew, val, nval, done, 0.99, 0.95); a2, _ = gae_np(rew, val, nval, done, 0.99, 0.95)
print("max abs diff", (a1 - a2).abs().max().item(), "identical", torch.equal(a1, a2))
