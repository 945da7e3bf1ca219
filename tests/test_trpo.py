"""trpo.py kernels: conjugate gradient, the Gaussian KL, and the trust-region step on fixed batches."""

import pytest
import torch

from conftest import load_script

trpo = load_script("trpo")


def test_conjugate_gradient_known_2x2_system():
    A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    x = trpo.conjugate_gradient(lambda v: A @ v, torch.tensor([1.0, 2.0], dtype=torch.float64), iters=2)
    torch.testing.assert_close(x, torch.tensor([1 / 11, 7 / 11], dtype=torch.float64))  # exact in n = 2 steps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conjugate_gradient_solves_random_spd_system(seed):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(30, 30, generator=g, dtype=torch.float64)
    A = M @ M.T + 0.5 * torch.eye(30, dtype=torch.float64)
    b = torch.randn(30, generator=g, dtype=torch.float64)
    x = trpo.conjugate_gradient(lambda v: A @ v, b, iters=200, residual_tol=1e-20)
    assert torch.linalg.norm(A @ x - b) / torch.linalg.norm(b) < 1e-8
    torch.testing.assert_close(x, torch.linalg.solve(A, b))


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mp, mq, lp, lq = torch.randn(10, 3), torch.randn(10, 3), torch.randn(3) * 0.3, torch.randn(3) * 0.3
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mp, lp.exp()), torch.distributions.Normal(mq, lq.exp())
    ).sum(-1)
    torch.testing.assert_close(trpo.gaussian_kl(mp, lp, mq, lq), reference)
    assert trpo.gaussian_kl(mp, lp, mp, lp).abs().max() < 1e-6


def fixed_batch(seed, n=512, obs_dim=6, act_dim=2):
    torch.manual_seed(seed)
    actor = trpo.Actor(obs_dim, act_dim)
    obs = torch.randn(n, obs_dim)
    with torch.no_grad():
        actions = actor.mean(obs) + actor.log_std.exp() * torch.randn(n, act_dim)
        old_logp = actor.log_prob(obs, actions)
    advantages = torch.randn(n)
    return actor, obs, actions, advantages, old_logp


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_kl", [0.001, 0.01, 0.05])
def test_trpo_step_stays_in_the_trust_region_and_improves_the_surrogate(seed, max_kl):
    actor, obs, actions, advantages, old_logp = fixed_batch(seed)
    with torch.no_grad():
        old_mean, old_log_std = actor.mean(obs), actor.log_std.clone()
    stats = trpo.trpo_step(actor, obs, actions, advantages, old_logp, max_kl)
    with torch.no_grad():
        kl = trpo.gaussian_kl(old_mean, old_log_std, actor.mean(obs), actor.log_std).mean().item()
        surrogate = ((actor.log_prob(obs, actions) - old_logp).exp() * advantages).mean().item()
    assert kl <= max_kl * (1 + 1e-5)
    assert surrogate >= advantages.mean().item()  # the old policy's surrogate (ratio 1)
    assert stats["line_search_steps"] >= 1  # on these batches a step is always found...
    assert stats["surrogate_improvement"] > 0 and kl > 0.2 * max_kl  # ...and it uses the radius
    assert stats["kl"] == pytest.approx(kl, rel=1e-4)


def test_trpo_step_keeps_the_policy_when_no_step_improves():
    actor, obs, actions, _, old_logp = fixed_batch(0)
    before = [p.detach().clone() for p in actor.parameters()]
    stats = trpo.trpo_step(actor, obs, actions, torch.zeros(len(obs)), old_logp, 0.01)  # zero advantage
    assert stats["line_search_steps"] == 0
    for p, q in zip(actor.parameters(), before):
        assert torch.equal(p, q)
