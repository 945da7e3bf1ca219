"""The known-answer check of per-network-clip.patch: the actor after ppo_update (2 epochs x 4 minibatches) on a
hand-made batch is the same whether the cost returns are scaled by 1 or 1000 when each network is clipped on its
own norm, and differs under the joint clip. Usage: python per-network-clip-check.py ppo_lagrangian.py [patched.py]"""
import importlib.util, sys, torch
def load(path):
    spec = importlib.util.spec_from_file_location("m", path); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m

def actor_after_update(lag, cost_scale):
    """The actor's parameters after ppo_update on a fixed hand-made batch whose cost returns are scaled by cost_scale."""
    n, obs_dim, act_dim = 256, 5, 2
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(n, obs_dim, generator=g), torch.randn(n, act_dim, generator=g)
    adv, cost_adv, ret, cost_ret = (torch.randn(n, generator=g) for _ in range(4))
    torch.manual_seed(1)
    actor, critic, cost_critic = lag.Actor(obs_dim, act_dim), lag.Critic(obs_dim), lag.Critic(obs_dim)
    params = list(actor.parameters()) + list(critic.parameters()) + list(cost_critic.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-4, eps=1e-5)
    with torch.no_grad():
        logp = lag.gaussian_log_prob(act, actor.mean(obs), actor.log_std)
    batch = {"obs": obs, "act": act, "logp": logp, "adv": adv, "cost_adv": cost_adv, "ret": ret, "cost_ret": cost_ret * cost_scale}
    args = lag.Args(update_epochs=2, num_minibatches=4)
    torch.manual_seed(2)  # the minibatch order
    lag.ppo_update(actor, critic, cost_critic, optimizer, params, batch, 1.0, args)
    return torch.cat([p.detach().flatten() for p in actor.parameters()])

for path in sys.argv[1:]:
    lag = load(path)
    a, b = actor_after_update(lag, 1.0), actor_after_update(lag, 1000.0)
    print(path, torch.allclose(a, b), (a - b).abs().max().item())
