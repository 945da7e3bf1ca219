"""CVPO kernels on hand-made inputs: the E-step dual against a brute-force grid, the weights, the M-step's KL bounds."""

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

from conftest import load_script

cvpo = load_script("cvpo")
torch.set_num_threads(1)  # tiny networks: threads only add synchronisation (minutes of it on a loaded machine)


def dual_value(q_r, q_c, eps, q_limit, eta, lam):
    return cvpo.dual_function(np.array([eta, lam]), q_r, q_c, eps, q_limit)[0]


def grid_minimum(q_r, q_c, eps, q_limit):
    """Brute force: g on a log grid of eta and a grid of lambda (including 0), then a finer grid around the best."""
    etas, lams = np.geomspace(1e-3, 1e3, 121), np.concatenate([[0.0], np.geomspace(1e-4, 1e3, 141)])
    for _ in range(4):
        values = np.array([[dual_value(q_r, q_c, eps, q_limit, e, lam) for lam in lams] for e in etas])
        i, j = np.unravel_index(values.argmin(), values.shape)
        best = (values[i, j], etas[i], lams[j])
        etas = np.geomspace(etas[max(i - 2, 0)], etas[min(i + 2, len(etas) - 1)], 21)
        lams = np.unique(np.concatenate([[0.0], np.linspace(lams[max(j - 2, 0)], lams[min(j + 2, len(lams) - 1)], 21)]))
    return best


def test_dual_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    q_r, q_c = rng.normal(size=(8, 5)), rng.uniform(0, 3, size=(8, 5))
    x = np.array([0.7, 0.4])
    _, grad = cvpo.dual_function(x, q_r, q_c, 0.1, 1.0)
    for k in range(2):
        step = np.eye(2)[k] * 1e-6
        numeric = (
            cvpo.dual_function(x + step, q_r, q_c, 0.1, 1.0)[0] - cvpo.dual_function(x - step, q_r, q_c, 0.1, 1.0)[0]
        ) / 2e-6
        assert grad[k] == pytest.approx(numeric, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_solve_dual_reaches_the_grid_minimum(seed):
    rng = np.random.default_rng(seed)
    K, B = 6, 4
    q_r = rng.normal(size=(K, B)) * rng.uniform(0.5, 3)
    q_c = rng.uniform(0, 2, size=(K, B)) + 0.8 * q_r.clip(min=0)  # cost correlates with reward: a real trade-off
    q_limit = float(np.quantile(q_c.mean(0), rng.uniform(0.2, 0.8)))  # active for some seeds, slack for others
    eta, lam = cvpo.solve_dual(q_r, q_c, 0.1, q_limit)
    assert eta > 0 and lam >= 0
    g_min, _, _ = grid_minimum(q_r, q_c, 0.1, q_limit)
    assert dual_value(q_r, q_c, 0.1, q_limit, eta, lam) <= g_min + 1e-4 * max(1.0, abs(g_min))


def test_lambda_is_zero_when_the_cost_constraint_is_slack():
    rng = np.random.default_rng(1)
    q_r, q_c = rng.normal(size=(16, 32)), rng.uniform(0, 1, size=(16, 32))
    eta, lam = cvpo.solve_dual(q_r, q_c, 0.1, q_limit=5.0)  # every action's Q_c is below the limit
    assert lam == pytest.approx(0.0, abs=1e-6)
    # With lambda = 0 the KL bound is what binds: the variational policy is eps away from the old one.
    weights = cvpo.e_step_weights(torch.tensor(q_r), torch.tensor(q_c), eta, lam)
    assert cvpo.e_step_kl(weights).item() == pytest.approx(0.1, rel=1e-3)


def test_lambda_is_positive_and_meets_the_limit_when_q_c_exceeds_it():
    rng = np.random.default_rng(2)
    q_c = rng.uniform(0, 10, size=(32, 64))
    q_r = q_c + rng.normal(size=q_c.shape)  # the rewarding actions are the costly ones
    q_limit = 3.0  # well below the old policy's mean Q_c of about 5
    eta, lam = cvpo.solve_dual(q_r, q_c, 0.5, q_limit)
    assert lam > 0.1
    weights = cvpo.e_step_weights(torch.tensor(q_r), torch.tensor(q_c), eta, lam)
    reweighted_cost = (weights * torch.tensor(q_c)).sum(0).mean().item()
    assert reweighted_cost == pytest.approx(q_limit, rel=1e-3)  # complementary slackness: the constraint is active
    # The same inputs without the constraint keep lambda at 0 and the cost high.
    _, lam_free = cvpo.solve_dual(q_r, q_c, 0.5, q_limit=100.0)
    assert lam_free == pytest.approx(0.0, abs=1e-6)


def test_solve_dual_is_finite_on_degenerate_inputs():
    q = np.zeros((4, 3))
    for q_r, q_c in ((q, q), (q + 1e6, q), (np.random.default_rng(0).normal(size=(4, 3)) * 1e4, q + 5.0)):
        eta, lam = cvpo.solve_dual(q_r, q_c, 0.1, 1.0)
        assert np.isfinite(eta) and np.isfinite(lam) and eta > 0 and lam >= 0


def test_weights_are_a_distribution_over_each_states_samples():
    rng = np.random.default_rng(3)
    q_r, q_c = torch.tensor(rng.normal(size=(16, 10))), torch.tensor(rng.uniform(size=(16, 10)))
    weights = cvpo.e_step_weights(q_r, q_c, eta=0.3, lam=2.0)
    assert weights.shape == (16, 10) and (weights >= 0).all()
    assert torch.allclose(weights.sum(0), torch.ones(10, dtype=weights.dtype))
    # The best action of a state (highest Q_r - lambda Q_c) has the largest weight.
    assert torch.equal(weights.argmax(0), (q_r - 2.0 * q_c).argmax(0))


def test_per_step_cost_limit():
    assert cvpo.per_step_cost_limit(25.0, 0.99, 1000) == pytest.approx(25 * (1 - 0.99**1000) / (0.01 * 1000))
    assert cvpo.per_step_cost_limit(25.0, 0.99, 1000) == pytest.approx(2.5, rel=1e-4)
    # A constant cost of d / T per step sums to d over the episode, and its discounted sum from the start is q_lim.
    d, T = 10.0, 10
    assert cvpo.per_step_cost_limit(d, 0.9, T) == pytest.approx(sum(d / T * 0.9**t for t in range(T)))


def test_discounted_cost_to_go_on_a_hand_made_episode():
    """Costs 0, 1, 0, 1 at gamma 0.5: G_3 = 1, G_2 = 0.5, G_1 = 1 + 0.25 = 1.25, G_0 = 0.625."""
    g = cvpo.discounted_cost_to_go(np.array([0.0, 1.0, 0.0, 1.0]), 0.5)
    np.testing.assert_allclose(g, [0.625, 1.25, 0.5, 1.0])
    # A constant cost d / T per step for T steps: G_0 is the per-step limit (the two conversions agree).
    assert cvpo.discounted_cost_to_go(np.full(1000, 25 / 1000), 0.99)[0] == pytest.approx(
        cvpo.per_step_cost_limit(25.0, 0.99, 1000)
    )


def test_q_network_shares_the_state_part_across_sampled_actions():
    """Q(s, a) is the MLP on [s, a]; with obs [B, O] and actions [K, B, A] it broadcasts to [K, B], each entry
    equal to Q of its own state and action."""
    torch.manual_seed(0)
    q = cvpo.QNetwork(5, 2, 16)
    obs, actions = torch.randn(3, 5), torch.randn(4, 3, 2)
    on_concat = q.q(torch.cat([obs.expand(4, -1, -1), actions], dim=-1)).squeeze(-1)
    torch.testing.assert_close(q(obs, actions), on_concat)
    torch.testing.assert_close(q(obs, actions[1]), on_concat[1])


def constant_critic(value: float):
    """A QNetwork that returns `value` at every (s, a): zero weights, the last bias at value."""
    q = cvpo.QNetwork(2, 1, 4)
    with torch.no_grad():
        for p in q.parameters():
            p.zero_()
        q.q.layers[-1].bias.fill_(value)
    return q


def test_critic_targets_take_the_lower_reward_twin_and_the_mean_of_the_cost_twins():
    """Reward twins 2 and 3, cost twins 1 and 3; reward 1, cost 0.5, gamma 0.9: the reward target is
    1 + 0.9 min(2, 3) = 2.8 and the cost target 0.5 + 0.9 (1 + 3) / 2 = 2.3, so (learning rate 0) the losses are
    (0.8^2 + 0.2^2) / 2 = 0.34 and (1.3^2 + 0.7^2) / 2 = 1.09. The E-step reads the higher cost twin, 3."""
    values = [2.0, 3.0, 1.0, 3.0]
    critics, targets = [constant_critic(v) for v in values], [constant_critic(v) for v in values]
    actor = cvpo.Actor(2, 1, 4, np.array([-1.0]), np.array([1.0]))
    obs, act = torch.randn(5, 2), torch.rand(5, 1) * 2 - 1
    batch = (obs, act, torch.ones(5), torch.full((5,), 0.5), torch.randn(5, 2), torch.zeros(5))
    optimizer = torch.optim.SGD([p for q in critics for p in q.parameters()], lr=0.0)
    _, q_r_loss, q_c_loss = cvpo.critic_steps(critics, targets, actor, optimizer, [batch], cvpo.Args(gamma=0.9))
    assert (q_r_loss, q_c_loss) == (pytest.approx(0.34), pytest.approx(1.09))
    q_r, q_c = cvpo.target_q_values(targets, obs, act)
    assert torch.equal(q_r, torch.full((5,), 2.0)) and torch.equal(q_c, torch.full((5,), 3.0))


def m_step_kls(args, calls: int):
    """Repeated M-steps on one fixed batch, with the weights of an E-step (KL 0.1) that favours larger actions."""
    torch.manual_seed(0)
    obs_dim, act_dim, B, K = 5, 2, 64, 16
    actor = cvpo.Actor(obs_dim, act_dim, 32, -np.ones(act_dim) * 3, np.ones(act_dim) * 3)
    optimizer = torch.optim.Adam(actor.parameters(), lr=args.policy_lr)
    obs = torch.randn(B, obs_dim)
    with torch.no_grad():
        old_mean, old_std = actor(obs)
    actions = old_mean + old_std * torch.randn(K, B, act_dim)
    q_r = ((actions - old_mean) / old_std).sum(-1)
    eta, _ = cvpo.solve_dual(q_r.numpy(), np.zeros((K, B)), 0.1, 1.0)
    weights = cvpo.e_step_weights(q_r, torch.zeros(K, B), eta, 0.0)
    alphas = [0.0, 0.0]
    for _ in range(calls):
        stats = cvpo.m_step(actor, optimizer, obs, actions, weights, old_mean, old_std, alphas, args)
    return stats


def test_m_step_keeps_the_kl_to_the_old_policy_within_its_bounds():
    """The bounds are soft (Lagrangian, as in MPO): the multipliers rise until each KL settles at its bound."""
    args = cvpo.Args()
    stats = m_step_kls(args, calls=600)
    assert stats["cvpo/kl_mean"] <= 1.2 * args.kl_mean_constraint
    assert stats["cvpo/kl_var"] <= 1.5 * args.kl_var_constraint
    assert stats["cvpo/alpha_mean"] > 0 and stats["cvpo/alpha_var"] > 0  # the bounds were doing the work:
    free = m_step_kls(cvpo.Args(kl_mean_constraint=1e6, kl_var_constraint=1e6), calls=600)
    assert free["cvpo/kl_mean"] > 10 * args.kl_mean_constraint and free["cvpo/kl_var"] > 10 * args.kl_var_constraint


def test_replay_buffer_wraps_around_and_samples_normalised():
    buffer = cvpo.ReplayBuffer(capacity=5, obs_dim=2, act_dim=1)
    for step in range(3):  # 2 envs a step: 6 transitions into 5 slots
        obs = np.array([[step, 0.0], [step, 1.0]])
        buffer.add(obs, np.zeros((2, 1)), np.array([step, step]), np.zeros(2), obs + 1, np.zeros(2))
    assert buffer.size == 5 and buffer.pos == 1
    assert buffer.rewards.tolist() == [2, 0, 1, 1, 2]  # the oldest transition was overwritten
    rms = cvpo.RunningMeanStd(2)
    obs, act, rew, cost, next_obs, term = buffer.sample(np.random.default_rng(0), 4, rms, "cpu")
    assert obs.shape == (4, 2) and act.shape == (4, 1) and rew.shape == (4,)
    assert torch.allclose(next_obs, torch.clamp(obs + 1, -10, 10), atol=1e-3)  # rms is (almost) the identity here


def test_evaluation_holds_each_action_for_the_checkpoints_action_repeat(tmp_path, monkeypatch):
    """A checkpoint carries --action-repeat in the actor, and evaluation holds each action that long, to the end."""

    class CountingEnv(gymnasium.Env):  # reward t and cost 10 t at step t, the episode ends at step 8
        observation_space, action_space = spaces.Box(-np.inf, np.inf, (1,)), spaces.Box(-1.0, 1.0, (1,))

        def __init__(self):
            self.t, self.actions = 0, []

        def reset(self, seed=None, options=None):
            self.t = 0
            return np.zeros(1), {}

        def step(self, action):
            self.t += 1
            self.actions.append(float(action[0]))
            return np.array([float(self.t)]), float(self.t), 10.0 * self.t, self.t == 8, False, {}

    actor, obs_rms = cvpo.Actor(1, 1, 8, np.array([-1.0]), np.array([1.0])), cvpo.RunningMeanStd(1)
    assert int(actor.action_repeat) == 1  # a fresh actor acts every step
    actor.action_repeat.fill_(3)
    cvpo.save_checkpoint(str(tmp_path / "model.pt"), actor, obs_rms, cvpo.Args(hidden=8))
    actor, obs_rms = cvpo.load_checkpoint(str(tmp_path / "model.pt"))
    env = CountingEnv()
    monkeypatch.setattr(cvpo.safety_gymnasium, "make", lambda env_id, render_mode=None: env)
    returns, costs = cvpo.evaluate(actor, obs_rms, "counting", 1, seed=0, stochastic=True)
    assert (returns[0], costs[0]) == (36.0, 360.0)  # 1 + ... + 8: the last decision stops at the episode's end
    held = [env.actions[i : i + 3] for i in (0, 3, 6)]
    assert [len(set(a)) for a in held] == [1, 1, 1] and len({a[0] for a in held}) == 3 and len(env.actions) == 8
