"""ppo.py kernels on hand-made inputs with known answers (runs of the script: test_scripts.py)."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from conftest import load_script

ppo = load_script("ppo")


def naive_gae(rewards, values, next_values, dones, gamma, lam):
    """A_t = sum_k (gamma*lam)^k delta_{t+k}, summed forward until the episode ends: the textbook form."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            discount = 1.0
            for k in range(t, T):
                adv[t, n] += discount * (rewards[k, n] + gamma * next_values[k, n] - values[k, n])
                if dones[k, n]:
                    break
                discount *= gamma * lam
    return adv


def test_gae_known_numbers_with_termination_and_truncation():
    # One env: terminated at t=1 (next value 0), truncated at t=3 with V(final obs) = 2.
    rewards = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    values = torch.zeros(4, 1)
    next_values = torch.tensor([[0.0], [0.0], [0.0], [2.0]])
    dones = torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    adv, ret = ppo.compute_gae(rewards, values, next_values, dones, gamma=0.5, lam=1.0)
    assert adv[:, 0].tolist() == pytest.approx([1.5, 1.0, 2.0, 2.0])
    assert torch.equal(ret, adv + values)


def test_gae_matches_naive_reference_on_random_episodes():
    rng = np.random.default_rng(0)
    T, N = 50, 3
    rewards, values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    dones = (rng.random((T, N)) < 0.1).astype(float)
    terminated = dones * (rng.random((T, N)) < 0.5)
    final_values = rng.normal(size=(T, N))  # V(final obs), used where an episode was truncated
    bootstrap = rng.normal(size=N)  # V of the observation after the rollout
    next_values = np.vstack([values[1:], bootstrap])
    next_values = np.where(dones == 1, final_values, next_values)
    next_values = np.where(terminated == 1, 0.0, next_values)
    expected = naive_gae(rewards, values, next_values, dones, 0.99, 0.95)
    as_t = lambda x: torch.tensor(x, dtype=torch.float64)
    adv, ret = ppo.compute_gae(as_t(rewards), as_t(values), as_t(next_values), as_t(dones), 0.99, 0.95)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), expected + values, rtol=1e-10, atol=1e-10)


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(1)
    batches = [rng.normal(loc=3.0, scale=[1.0, 5.0, 0.1], size=(n, 3)) for n in (1, 7, 64, 2, 300)]
    rms = ppo.RunningMeanStd(3)
    for batch in batches:
        rms.update(batch)
    data = np.concatenate(batches)
    # The normaliser starts from a prior (mean 0, var 1) with weight 1e-4 samples: off by ~1e-6 here.
    np.testing.assert_allclose(rms.mean, data.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rms.var, data.var(axis=0), rtol=1e-5, atol=1e-5)
    z = rms.normalize(data)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
    assert np.abs(rms.normalize(np.full((1, 3), 1e6))).max() == rms.clip  # clipped at +-10


def test_gaussian_log_prob_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    actor = ppo.Actor(5, 3)
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([-1.0, 0.0, 0.5]))
    obs, action = torch.randn(16, 5), torch.randn(16, 3)
    reference = torch.distributions.Normal(actor.mean(obs), actor.log_std.exp())
    log_prob, entropy = actor.log_prob_entropy(obs, action)
    torch.testing.assert_close(log_prob, reference.log_prob(action).sum(-1))
    torch.testing.assert_close(entropy, reference.entropy().sum(-1)[0])


def test_mlp_matches_the_same_layers_called_as_modules():
    net = ppo.MLP(5, 2, out_std=1.0)
    x = torch.randn(7, 5)
    l0, l1, l2 = net.layers
    torch.testing.assert_close(net(x), l2(torch.tanh(l1(torch.tanh(l0(x))))))


def test_check_spaces_rejects_discrete_actions_and_image_observations():
    flat = spaces.Box(-1, 1, (4,))
    with pytest.raises(SystemExit, match="continuous"):
        ppo.check_spaces(flat, spaces.Discrete(3))
    with pytest.raises(SystemExit, match="flat Box observation"):
        ppo.check_spaces(spaces.Box(0, 255, (8, 8, 3)), flat)
    ppo.check_spaces(flat, flat)  # accepted


def test_checkpoint_round_trip_gives_same_actions(tmp_path):
    torch.manual_seed(0)
    actor, rms = ppo.Actor(6, 2), ppo.RunningMeanStd(6)
    rms.update(np.random.default_rng(0).normal(5.0, 3.0, size=(100, 6)))
    path = str(tmp_path / "model.pt")
    ppo.save_checkpoint(path, actor, rms, ppo.Args())
    actor2, rms2 = ppo.load_checkpoint(path)
    obs = np.random.default_rng(1).normal(5.0, 3.0, size=(10, 6))
    np.testing.assert_array_equal(ppo.policy_action(actor, rms, obs), ppo.policy_action(actor2, rms2, obs))
    np.testing.assert_array_equal(rms2.mean, rms.mean)
