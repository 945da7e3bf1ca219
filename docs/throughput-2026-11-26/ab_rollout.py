"""A/B in one process on PointGoal1, 2 async envs: raw random stepping vs ppo.py's rollout body (policy, rms)."""
import os, sys, time
import numpy as np, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")); import ppo
torch.set_num_threads(1)
args = ppo.env_layout(ppo.Args())
envs = ppo.make_envs(args)
N = args.num_envs
obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
low, high = envs.single_action_space.low, envs.single_action_space.high
actor = ppo.Actor(obs_dim, act_dim); rms = ppo.RunningMeanStd(obs_dim)
raw_obs, _ = envs.reset(seed=1)
rng = np.random.default_rng(0)
def raw(T):
    t0 = time.perf_counter(); c0 = time.process_time()
    for _ in range(T): envs.step(rng.uniform(low, high, size=(N, act_dim)))
    return time.perf_counter() - t0, time.process_time() - c0
def body(T, policy=True, stats=True):
    global raw_obs
    std = actor.log_std.exp().detach().numpy(); noise = rng.standard_normal((T, N, act_dim))
    t0 = time.perf_counter(); c0 = time.process_time()
    for t in range(T):
        if policy:
            with torch.no_grad():
                mean = actor.mean(torch.as_tensor(rms.normalize(raw_obs), dtype=torch.float32)).numpy()
            a = mean + std * noise[t]
        else:
            a = rng.uniform(low, high, size=(N, act_dim))
        raw_obs, reward, cost, term, trunc, info = envs.step(np.clip(a, low, high))
        if stats:
            rms.update(raw_obs); x = rms.normalize(raw_obs)
    return time.perf_counter() - t0, time.process_time() - c0
T = 2000
for rep in range(2):
    for name, f in (("raw", lambda: raw(T)), ("policy+stats", lambda: body(T)), ("policy only", lambda: body(T, True, False)),
                    ("random+stats", lambda: body(T, False, True))):
        w, c = f()
        print(f"{name:14s} wall {w/T*1e3:.3f} ms/step  parent cpu {c/T*1e3:.3f} ms/step", flush=True)
envs.close()
