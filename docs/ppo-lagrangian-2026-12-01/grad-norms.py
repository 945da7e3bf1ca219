"""The gradient norms of ppo_lagrangian.py's three networks in its first 3 updates (PointGoal1 seed 11), and the factor
by which the joint clip (max norm 0.5 over all parameters) scales the actor's gradient. Run from a scratch folder
(it writes runs/ there): python docs/ppo-lagrangian-2026-12-01/grad-norms.py"""
import os, sys, numpy as np, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")); sys.argv = ["x"]
import ppo_lagrangian as pl
rec = []
orig = torch.nn.utils.clip_grad_norm_
def wrap(params, max_norm, **kw):
    params = list(params)
    a, c, k = params[:7], params[7:13], params[13:19]  # actor: 3 layers (w, b) + log_std; each critic: 3 layers
    n = lambda ps: torch.sqrt(sum(p.grad.pow(2).sum() for p in ps)).item()
    rec.append((n(a), n(c), n(k), n(params)))
    return orig(params, max_norm, **kw)
pl.nn.utils.clip_grad_norm_ = wrap
args = pl.Args(seed=11, total_timesteps=24000, eval_episodes=0, exp_name="gn")
pl.main(args)
r = np.array(rec); print("minibatches", len(r))
for u in range(3):
    x = r[u*320:(u+1)*320]
    scale = np.minimum(1, 0.5 / x[:, 3])
    print(f"update {u+1}: actor norm med {np.median(x[:,0]):.3f} critic {np.median(x[:,1]):.4f} cost critic med {np.median(x[:,2]):.3f} p90 {np.percentile(x[:,2],90):.3f} total med {np.median(x[:,3]):.3f}; clipped {np.mean(x[:,3]>0.5):.2f}, actor scale mean {scale.mean():.3f} min {scale.min():.3f}")
