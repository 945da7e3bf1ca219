"""dyna_cppo.py kernels: the multi-step model loss on a known linear system, per-trajectory GAE of imagined
rollouts, windows that respect episode ends, and the reduction to CPPO with --model-rollouts 0."""
import os

import numpy as np
import pytest
import torch

from helpers import load_script, only_run_dir, read_progress

dyna = load_script("dyna_cppo")


def linear_system_windows(n, k, seed):
    """Windows of s' = A s + B a (reward = first state, no cost) from random starts and actions."""
    g = torch.Generator().manual_seed(seed)
    A = torch.tensor([[0.9, 0.2, 0.0], [-0.2, 0.9, 0.1], [0.0, 0.0, 0.8]])
    B = torch.tensor([[0.5, 0.0], [0.0, 0.3], [0.2, -0.2]])
    s = torch.randn(n, 3, generator=g)
    act = torch.rand(n, k, 2, generator=g) * 2 - 1
    states, rew = [], []
    for i in range(k):
        s = s @ A.T + act[:, i] @ B.T
        states.append(s)
        rew.append(s[:, 0])
    start = states[0] @ torch.linalg.inv(A).T - act[:, 0] @ (torch.linalg.inv(A) @ B).T  # recover s_0
    return start, act, torch.stack(states, 1), torch.stack(rew, 1), torch.zeros(n, k)


def test_multi_step_loss_fits_a_known_linear_system():
    torch.manual_seed(0)
    k = 5
    model = dyna.DynamicsModel(3, 2, 64, torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    test = linear_system_windows(2000, k, seed=123)
    with torch.no_grad():
        _, before = dyna.multi_step_loss(model, *test)
    for step in range(600):
        loss, _ = dyna.multi_step_loss(model, *linear_system_windows(256, k, seed=step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        _, after = dyna.multi_step_loss(model, *test)
    assert after[-1] < 0.2 * before[-1]  # the K-step error falls with training...
    assert after[0] < 0.05 and after[-1] < 0.15  # ...and the model fits the system (state scale ~1)
    assert (after[1:] >= after[:-1] * 0.5).all()  # errors compound along k, as they should


def test_multi_step_loss_rolls_on_its_own_predictions():
    # A model that predicts "no change" has k-step error ||s_0 - s_k||, not the one-step error repeated.
    model = dyna.DynamicsModel(3, 2, 8, torch.Generator().manual_seed(0))
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    obs, act, next_obs, rew, cost = linear_system_windows(100, 4, seed=1)
    _, errors = dyna.multi_step_loss(model, obs, act, next_obs, rew, cost)
    expected = (next_obs - obs[:, None]).norm(dim=-1).mean(0)
    torch.testing.assert_close(errors, expected)


def test_window_starts_never_cross_an_episode_end():
    done = np.zeros((10, 2))
    done[3, 0] = 1  # env 0: an episode ends at t = 3
    starts = {tuple(x) for x in dyna.window_starts(done, 3)}
    # env 0: windows t..t+2 may end at 3 but not contain it earlier: t = 0, 1 ok; 2, 3 cross; 4..7 ok
    assert {t for t, n in starts if n == 0} == {0, 1, 4, 5, 6, 7}
    assert {t for t, n in starts if n == 1} == set(range(8))


def test_imagined_gae_is_per_trajectory_and_bootstraps_at_the_horizon():
    torch.manual_seed(0)
    H, M, obs_dim, act_dim = 4, 3, 5, 2
    actor, critic, cost_critic = dyna.Actor(obs_dim, act_dim), dyna.Critic(obs_dim), dyna.Critic(obs_dim)
    args = dyna.Args()
    obs, act = torch.randn(H + 1, M, obs_dim), torch.randn(H, M, act_dim)
    rew, cost = torch.randn(H, M), torch.rand(H, M)
    zeros = torch.zeros(H, M)
    batch = dyna.advantages_batch(actor, critic, cost_critic, obs, act, rew, cost, zeros, torch.zeros(2, H, M), args)
    rew2 = rew.clone()
    rew2[:, 1] += 100.0  # change one trajectory only
    batch2 = dyna.advantages_batch(actor, critic, cost_critic, obs, act, rew2, cost, zeros, torch.zeros(2, H, M), args)
    adv, adv2 = batch["adv"].reshape(H, M), batch2["adv"].reshape(H, M)
    torch.testing.assert_close(adv[:, [0, 2]], adv2[:, [0, 2]])  # the other trajectories do not move
    assert (adv2[:, 1] - adv[:, 1]).abs().min() > 1.0
    with torch.no_grad():  # the last imagined step bootstraps from V(s_H) of its own trajectory
        v = critic(obs)
    expected_last = rew[-1] + args.gamma * v[H] - v[H - 1]
    torch.testing.assert_close(adv[-1], expected_last)


def test_imagination_runs_all_starts_as_one_batch_and_clips_to_real_ranges():
    torch.manual_seed(0)
    model = dyna.DynamicsModel(4, 2, 16, torch.Generator().manual_seed(0))
    actor = dyna.Actor(4, 2)
    low, high = -torch.ones(2), torch.ones(2)
    obs, act, rew, cost = dyna.imagine(model, actor, torch.randn(7, 4), 3, low, high, (-0.1, 0.1), (0.0, 0.5),
                                       torch.Generator().manual_seed(1))
    assert obs.shape == (4, 7, 4) and act.shape == (3, 7, 2) and rew.shape == cost.shape == (3, 7)
    assert rew.min() >= -0.1 and rew.max() <= 0.1 and cost.min() >= 0.0 and cost.max() <= 0.5


def run_main(module, cwd, **fields):
    os.makedirs(cwd)
    os.chdir(cwd)
    base = dict(env_id="SafetyHalfCheetahVelocity-v1", num_envs=2, num_steps=250, total_timesteps=1500,
                eval_episodes=0, seed=5)
    module.main(module.Args(**{**base, **fields}))
    return read_progress(only_run_dir(cwd))


def test_zero_model_rollouts_is_exactly_cppo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cppo_rows = run_main(load_script("cppo"), tmp_path / "cppo")
    dyna_rows = run_main(dyna, tmp_path / "dyna", model_rollouts=0)
    shared = [k for k in cppo_rows[0] if k in dyna_rows[0] and k != "sps" and not k.startswith("time_")]
    assert len(shared) > 15
    assert [{k: r[k] for k in shared} for r in cppo_rows] == [{k: r[k] for k in shared} for r in dyna_rows]
    assert np.isfinite(float(dyna_rows[-1]["model/k_step_error"]))  # the model still trains and is measured


def test_cost_margin_comes_from_real_episodes_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = run_main(dyna, tmp_path / "run", num_steps=500, total_timesteps=3000, model_start_iter=0,
                    model_rollouts=64, cost_limit=0.5)
    costs, weights = [], []  # J_c: the window (32, more than ever end here) of every real episode so far
    for row in rows:
        if int(row["episodes"]) > 0:
            costs.append(float(row["episodic_cost"]))
            weights.append(int(row["episodes"]))
        measured = np.average(costs, weights=weights) if costs else 0.0
        assert float(row["cost_margin"]) == pytest.approx((0.5 - measured) / 1000)
        assert int(row["cost_estimate_episodes"]) == sum(weights)
    assert all(np.isfinite(float(r["imagined/return"])) for r in rows)
