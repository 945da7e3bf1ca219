"""PPO minibatch step on 250 samples (HalfCheetah sizes), split into indexing, forward, backward, clipping, Adam, statistics (ms). Run from anywhere: python docs/throughput-2026-11-26/minibatch_step.py"""
import os, sys, time
import numpy as np, torch, torch.nn as nn
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import ppo
torch.set_num_threads(1)
obs_dim, act_dim = 26, 6
torch.manual_seed(0)
actor, critic = ppo.Actor(obs_dim, act_dim), ppo.Critic(obs_dim)
params = list(actor.parameters()) + list(critic.parameters())
opt = torch.optim.Adam(params, lr=3e-4, eps=1e-5, fused=True)
obs, act = torch.randn(8000, obs_dim), torch.randn(8000, act_dim)
logp, adv, ret = torch.randn(8000), torch.randn(8000), torch.randn(8000)
perm = torch.randperm(8000).split(250)
T = dict(idx=0, fwd=0, bwd=0, clip=0, opt=0, stats=0)
n = 1000
for k in range(n + 100):
    if k == 100: T = {kk: 0 for kk in T}
    t = time.perf_counter()
    idx = perm[k % 32]
    o, a_, lp, ad, rt = obs[idx], act[idx], logp[idx], adv[idx], ret[idx]
    t1 = time.perf_counter(); T["idx"] += t1 - t
    new_logp, ent = actor.log_prob_entropy(o, a_)
    lr_ = new_logp - lp; ratio = lr_.exp()
    a = (ad - ad.mean()) / (ad.std() + 1e-8)
    pl = -torch.min(ratio * a, ratio.clamp(0.8, 1.2) * a).mean()
    vl = 0.5 * (critic(o) - rt).pow(2).mean()
    loss = pl + 0.5 * vl
    t2 = time.perf_counter(); T["fwd"] += t2 - t1
    opt.zero_grad(); loss.backward()
    t3 = time.perf_counter(); T["bwd"] += t3 - t2
    nn.utils.clip_grad_norm_(params, 0.5, foreach=True)
    t4 = time.perf_counter(); T["clip"] += t4 - t3
    opt.step()
    t5 = time.perf_counter(); T["opt"] += t5 - t4
    with torch.no_grad():
        kl = ((ratio - 1) - lr_).mean(); cf = ((ratio - 1).abs() > 0.2).float().mean()
    s = torch.stack([pl.detach(), vl.detach(), ent.detach(), kl, cf])
    T["stats"] += time.perf_counter() - t5
print({k: round(v / n * 1e3, 3) for k, v in T.items()}, round(sum(T.values()) / n * 1e3, 3))
