import sys, time, torch, numpy as np
sys.path.insert(0, ".")  # run from the repository root
import ppo_lagrangian as pl
torch.set_num_threads(1)
args = pl.Args()
n, od, ad = 8000, 60, 2
actor, critic, ccritic = pl.Actor(od, ad), pl.Critic(od), pl.Critic(od)
params = list(actor.parameters()) + list(critic.parameters()) + list(ccritic.parameters())
opt = torch.optim.Adam(params, lr=3e-4, eps=1e-5, fused=True)
g = torch.Generator().manual_seed(0)
batch = {"obs": torch.randn(n, od), "act": torch.randn(n, ad), "logp": torch.randn(n) - 2, "adv": torch.randn(n),
         "cost_adv": torch.randn(n), "ret": torch.randn(n), "cost_ret": torch.randn(n)}
with torch.no_grad():
    batch["logp"] = pl.gaussian_log_prob(batch["act"], actor.mean(batch["obs"]), actor.log_std)
for rep in range(3):
    t = time.perf_counter(); pl.ppo_update(actor, critic, ccritic, opt, params, batch, 2.0, args); print("full update", round(time.perf_counter() - t, 3))
# the pieces of one minibatch step
idx = torch.randperm(n)[:250]
obs = batch["obs"][idx]
def timeit(f, k=320):
    t = time.perf_counter()
    for _ in range(k): f()
    return (time.perf_counter() - t) / k * 320
print("actor logp+ent fwd", round(timeit(lambda: actor.log_prob_entropy(obs, batch["act"][idx])), 3))
print("critic fwd", round(timeit(lambda: critic(obs)), 3))
def step_all():
    lp, ent = actor.log_prob_entropy(obs, batch["act"][idx])
    loss = -(lp * batch["adv"][idx]).mean() + 0.5 * (critic(obs) - batch["ret"][idx]).pow(2).mean() + 0.5 * (ccritic(obs) - batch["cost_ret"][idx]).pow(2).mean()
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 0.5, foreach=True); opt.step()
def step_nocost():
    lp, ent = actor.log_prob_entropy(obs, batch["act"][idx])
    loss = -(lp * batch["adv"][idx]).mean() + 0.5 * (critic(obs) - batch["ret"][idx]).pow(2).mean()
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 0.5, foreach=True); opt.step()
for _ in range(2):
    print("minibatch step with cost critic, x320", round(timeit(step_all), 3), " without", round(timeit(step_nocost), 3))
