"""dyna_cppo.py kernels: the multi-step model loss on a known linear system, per-trajectory GAE of imagined
rollouts, windows that respect episode ends, and the reduction to CPPO with --model-rollouts 0."""

import dataclasses
import math
import os

import numpy as np
import pytest
import torch

from conftest import load_script, only_run_dir, read_progress, top_level_source

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


def classifier_of(obs_dim=3, groups=(), bias=None):
    """A cost classifier over obs_dim inputs and 2 actions; with `bias`, its net outputs that logit everywhere."""
    classifier = dyna.CostClassifier(obs_dim, 2, list(groups), torch.Generator().manual_seed(0))
    if bias is not None:
        for p in classifier.parameters():
            torch.nn.init.zeros_(p)
        torch.nn.init.constant_(classifier.net.layers[-1].bias, bias)
    return classifier


def test_multi_step_loss_fits_a_known_linear_system():
    torch.manual_seed(0)
    k = 5
    model = dyna.DynamicsModel(3, 2, 64, torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    test = linear_system_windows(2000, k, seed=123)
    with torch.no_grad():
        _, before = dyna.multi_step_loss(model, classifier_of(), *test)
    for step in range(600):
        loss, _ = dyna.multi_step_loss(model, classifier_of(), *linear_system_windows(256, k, seed=step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        _, after = dyna.multi_step_loss(model, classifier_of(), *test)
    assert after[-1] < 0.2 * before[-1]  # the K-step error falls with training...
    assert after[0] < 0.05 and after[-1] < 0.15  # ...and the model fits the system (state scale ~1)
    assert (after[1:] >= after[:-1] * 0.5).all()  # errors compound along k, as they should


def train_on(windows_of, steps, seed=0):
    torch.manual_seed(seed)
    model = dyna.DynamicsModel(3, 2, 64, torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        loss, _ = dyna.multi_step_loss(model, classifier_of(), *windows_of(256, step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def random_walk_windows(n, k, seed):
    """s_{t+1} = s_t + noise, whatever the action: nothing to learn beyond "no change"."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(n, 3, generator=g)
    states = start[:, None] + torch.cumsum(0.3 * torch.randn(n, k, 3, generator=g), dim=1)
    return start, torch.rand(n, k, 2, generator=g) * 2 - 1, states, torch.zeros(n, k), torch.zeros(n, k)


def test_model_skill_near_one_where_the_model_is_exact_and_not_above_zero_on_noise():
    test = linear_system_windows(2000, 5, seed=123)
    exact = train_on(lambda n, step: linear_system_windows(n, 5, seed=step), 600)
    with torch.no_grad():
        stats = dyna.model_skill(exact, classifier_of(), *test, mean_delta=torch.zeros(3), mean_reward=0.0)
    assert stats["model/skill"] > 0.85 and stats["model/k_step_skill"] > 0.6
    assert stats["model/reward_error"] < 0.05 * stats["model/reward_baseline_error"]
    # The zero-change baseline's error is the distance to the next state, as in its definition.
    torch.testing.assert_close(
        torch.tensor(stats["model/zero_change_error"]), (test[2][:, 0] - test[0]).norm(dim=-1).mean()
    )
    noise = random_walk_windows(2000, 5, seed=7)
    walker = train_on(lambda n, step: random_walk_windows(n, 5, seed=1000 + step), 300)
    zero = dyna.DynamicsModel(3, 2, 8, torch.Generator().manual_seed(0))
    for p in zero.parameters():
        torch.nn.init.zeros_(p)  # predicts "no change": exactly the zero-change baseline
    with torch.no_grad():
        trained = dyna.model_skill(walker, classifier_of(), *noise, mean_delta=torch.zeros(3), mean_reward=0.0)
        untrained = dyna.model_skill(
            dyna.DynamicsModel(3, 2, 64, torch.Generator().manual_seed(3)),
            classifier_of(),
            *noise,
            mean_delta=torch.zeros(3),
            mean_reward=0.0,
        )
        no_change = dyna.model_skill(zero, classifier_of(), *noise, mean_delta=torch.zeros(3), mean_reward=0.0)
    assert trained["model/skill"] < 0.02  # noise cannot be learnt: no better than a baseline (up to sampling)
    assert untrained["model/skill"] < 0 and no_change["model/skill"] == pytest.approx(0.0, abs=1e-6)
    # A mean delta that matches a drift beats zero change, and the skill is measured against the better one.
    drift = (test[0], test[1], test[0][:, None] + 0.5 * torch.arange(1, 6)[None, :, None], test[3], test[4])
    with torch.no_grad():
        drifting = dyna.model_skill(zero, classifier_of(), *drift, mean_delta=torch.full((3,), 0.5), mean_reward=0.0)
    assert drifting["model/mean_delta_error"] < 1e-5 and drifting["model/skill"] < -1e3


def test_model_skill_scores_the_cost_head_as_a_classifier():
    zero = dyna.DynamicsModel(3, 2, 8, torch.Generator().manual_seed(0))
    for p in zero.parameters():
        torch.nn.init.zeros_(p)
    obs, act, next_obs, rew, _ = linear_system_windows(8, 2, seed=1)
    cost = torch.zeros(8, 2)
    cost[:2, 0] = 1.0  # two of eight first steps have a cost
    with torch.no_grad():
        always = dyna.model_skill(zero, classifier_of(bias=5.0), obs, act, next_obs, rew, cost, torch.zeros(3), 0.0)
        never = dyna.model_skill(zero, classifier_of(bias=-5.0), obs, act, next_obs, rew, cost, torch.zeros(3), 0.0)
    assert always["model/cost_recall"] == 1.0 and always["model/cost_precision"] == pytest.approx(0.25)
    assert never["model/cost_recall"] == 0.0 and math.isnan(never["model/cost_precision"])


def zero_model(obs_dim=3):
    """A model whose net outputs zeros: no state change, reward = reward_shift."""
    model = dyna.DynamicsModel(obs_dim, 2, 8, torch.Generator().manual_seed(0))
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    return model


def test_the_reward_head_works_in_units_of_the_clipped_rewards_spread():
    rewards = np.concatenate([np.full(98, 0.01), np.full(98, -0.01), [1.0, 1.0, -1.0, 5.0]])  # 4 rare events
    model = zero_model()
    model.fit_reward_scale(rewards, tail=0.01)
    low, high, shift, scale = model.reward_stats.tolist()
    # The 1% and 99% quantiles of these rewards are -0.01 and 1.0 (numpy's linear interpolation): the +5 is cut.
    assert low == pytest.approx(-0.01) and high == pytest.approx(1.0)
    clipped = np.clip(rewards, -0.01, 1.0)
    assert shift == pytest.approx(clipped.mean()) and scale == pytest.approx(clipped.std(), rel=1e-5)
    torch.testing.assert_close(model.reward_target(torch.tensor([5.0, -1.0, 0.01])), torch.tensor([1.0, -0.01, 0.01]))
    # The zero model predicts the mean: its reward loss is the clipped targets' variance / scale^2 = 1 per step,
    # whatever the rewards' units (x100 below); the state error is 0 and the cost BCE at p = 0.5 is ln 2 per step.
    for units in (1.0, 100.0):
        model.fit_reward_scale(units * rewards, tail=0.01)
        rew = torch.tensor(units * rewards, dtype=torch.float32)[:, None].repeat(1, 2)  # [200, K = 2]
        obs = torch.zeros(200, 3)
        loss, errors = dyna.multi_step_loss(
            model,
            classifier_of(bias=0.0),
            obs,
            torch.zeros(200, 2, 2),
            torch.zeros(200, 2, 3),
            rew,
            torch.zeros(200, 2),
        )
        assert loss.item() == pytest.approx(2 * (1.0 + math.log(2)), rel=1e-4) and errors.abs().max() == 0


def test_model_skill_scores_the_reward_and_cost_heads_against_constants():
    model = zero_model()
    obs, act, next_obs, _, _ = linear_system_windows(8, 2, seed=1)
    rew = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])[:, None].repeat(1, 2)
    cost = torch.zeros(8, 2)
    cost[:2, 0] = 1.0  # a cost rate of 1/4 on the first step
    model.fit_reward_scale(rew.numpy().ravel(), tail=0.0)  # shift 0.5: the zero model predicts the mean reward
    half = classifier_of(bias=0.0)  # p = 0.5 everywhere
    with torch.no_grad():
        at_mean = dyna.model_skill(model, half, obs, act, next_obs, rew, cost, torch.zeros(3), mean_reward=0.5)
        model.net[-1].bias[-1] = 2.0  # now it predicts 0.5 + 0.5 * 2 = 1.5: error 1.25 against 0.25
        off = dyna.model_skill(model, half, obs, act, next_obs, rew, cost, torch.zeros(3), mean_reward=0.5)
    assert at_mean["model/reward_skill"] == pytest.approx(0.0, abs=1e-6)
    assert off["model/reward_error"] == pytest.approx(1.25) and off["model/reward_skill"] == pytest.approx(-4.0)
    # p = 0.5 everywhere: Brier 0.25 against the best constant's rate * (1 - rate) = 3/16.
    assert at_mean["model/cost_skill"] == pytest.approx(1 - 0.25 / (3 / 16))
    at_rate = classifier_of(bias=math.log(1 / 3))  # p = 1/4, the rate: exactly the best constant
    with torch.no_grad():
        rate = dyna.model_skill(model, at_rate, obs, act, next_obs, rew, cost, torch.zeros(3), mean_reward=0.5)
    assert rate["model/cost_skill"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_main_gates_imagination_on_the_lowest_of_state_reward_and_cost_skill(tmp_path, monkeypatch):
    # HalfCheetah's first rollouts have no cost; `costly` puts one in each, so that the cost skill counts.
    monkeypatch.chdir(tmp_path)
    measured, stored = dyna.model_skill, dyna.stored_rollout

    def costly(*a, **kw):
        rollout = stored(*a, **kw)
        rollout["cost"][0, 0] = 1.0
        return rollout

    cases = [((0.9, -0.1, 0.9), True, 0.0), ((0.9, 0.2, 0.9), True, 1.0), ((0.9, 0.2, -0.3), True, 0.0)]
    cases += [((0.9, 0.2, -0.3), False, 1.0)]  # no cost in the rollout: the cost skill does not count
    for i, ((state, reward, cost), with_cost, on) in enumerate(cases):

        def skill(*a, s=(state, reward, cost), **kw):
            return {**measured(*a, **kw), "model/skill": s[0], "model/reward_skill": s[1], "model/cost_skill": s[2]}

        monkeypatch.setattr(dyna, "model_skill", skill)
        monkeypatch.setattr(dyna, "stored_rollout", costly if with_cost else stored)
        rows = run_main(dyna, tmp_path / str(i), model_start_iter=0, model_rollouts=64)  # default gate: 0
        assert [float(r["imagined/on"]) for r in rows] == [0.0] + [on] * (len(rows) - 1), i


def test_observation_groups_are_the_sensors_in_the_flat_order():
    # PointGoal1's observation: accelerometer, velocimeter, gyro, magnetometer (3 each), then 16 bins for each
    # of the goal, hazards and vases lidars; a velocity task has no sensor dict.
    spans = [(0, 3), (3, 6), (6, 9), (9, 12), (12, 28), (28, 44), (44, 60)]
    assert dyna.observation_groups("SafetyPointGoal1-v0") == spans
    assert dyna.observation_groups("SafetyHalfCheetahVelocity-v1") == []


def test_the_cost_classifier_pools_each_group_in_one_scale():
    torch.manual_seed(0)
    groups = [(0, 2), (2, 5)]
    classifier = classifier_of(5, groups)
    # A max-pool per group: the order inside a group does not matter, which group an element is in does.
    x, act = torch.randn(64, 5), torch.randn(64, 2)
    with torch.no_grad():
        out = classifier(x, act)
        torch.testing.assert_close(classifier(x[:, [1, 0, 4, 2, 3]], act), out)
        assert (classifier(x[:, [2, 1, 0, 3, 4]], act) - out).abs().max() > 1e-3
    # Inputs normalised per element (x - mean_i) / std_i come back as raw values standardised per group: group
    # (0, 2) with means 0 and 2 and variances 1 and 1 has mean 1 and spread sqrt(1 + 1).
    mean, var = np.array([0.0, 2.0, 0.0, 0.0, 0.0]), np.array([1.0, 1.0, 4.0, 4.0, 4.0])
    classifier.fit_input_scale(mean, var, eps=0.0)
    normalised = torch.tensor([[0.0, 0.0, 0.5, 0.0, 0.0]])  # raw: 0, 2, 1, 0, 0
    scale, shift = classifier.input_stats
    expected = torch.tensor([[-1 / math.sqrt(2), 1 / math.sqrt(2), 0.5, 0.0, 0.0]])
    torch.testing.assert_close(normalised * scale + shift, expected)


def test_the_cost_classifier_learns_a_rare_proximity_cost_from_data():
    # Two lidars of 8 bins, each below 0.8; a cost in ~4% of the steps, where one bin of the hazard lidar, any, is
    # 0.95 (a hazard is close). Trained with the loss's BCE on 3000 steps, the classifier separates held-out steps:
    # a Brier skill against the constant rate near 1.
    g = torch.Generator().manual_seed(0)

    def data(n):
        x = torch.rand(n, 16, generator=g) * 0.8
        hot = torch.rand(n, generator=g) < 0.04
        x[hot, 8 + torch.randint(8, (int(hot.sum()),), generator=g)] = 0.95
        return x, torch.rand(n, 2, generator=g) * 2 - 1, hot.float()

    classifier = classifier_of(16, [(0, 8), (8, 16)])
    x, act, cost = data(3000)
    classifier.fit_input_scale(x.mean(0).numpy(), x.var(0).numpy())
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2)
    for step in range(400):
        idx = torch.randint(3000, (256,), generator=g)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(classifier(x[idx], act[idx]), cost[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, act, cost = data(4000)
    with torch.no_grad():
        p = torch.sigmoid(classifier(x, act))
    rate = cost.mean()
    assert 1 - (p - cost).pow(2).mean() / (rate * (1 - rate)) > 0.95


def test_the_cost_loss_trains_the_classifier_on_the_models_states_but_not_the_model():
    # The classifier reads (s_hat_k, a_k) before each step, detached: the model's gradient is the same whatever
    # the costs, while the classifier's is not (it learns from them).
    obs, act, next_obs, rew, _ = linear_system_windows(32, 3, seed=2)
    model_grads, classifier_grads = [], []
    for cost in (torch.zeros(32, 3), torch.ones(32, 3)):
        model = dyna.DynamicsModel(3, 2, 8, torch.Generator().manual_seed(0))
        classifier = classifier_of()  # random weights: its logit depends on the states it is given
        loss, _ = dyna.multi_step_loss(model, classifier, obs, act, next_obs, rew, cost)
        loss.backward()
        model_grads.append([p.grad.clone() for p in model.parameters()])
        classifier_grads.append([p.grad.clone() for p in classifier.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*model_grads))
    assert not all(torch.equal(a, b) for a, b in zip(*classifier_grads))


def test_multi_step_loss_rolls_on_its_own_predictions():
    # A model that predicts "no change" has k-step error ||s_0 - s_k||, not the one-step error repeated.
    model = dyna.DynamicsModel(3, 2, 8, torch.Generator().manual_seed(0))
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    obs, act, next_obs, rew, cost = linear_system_windows(100, 4, seed=1)
    _, errors = dyna.multi_step_loss(model, classifier_of(), obs, act, next_obs, rew, cost)
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
    obs, act, rew, cost = dyna.imagine(
        model,
        classifier_of(4),
        actor,
        torch.randn(7, 4),
        3,
        low,
        high,
        (-0.1, 0.1),
        (0.0, 0.5),
        torch.Generator().manual_seed(1),
    )
    assert obs.shape == (4, 7, 4) and act.shape == (3, 7, 2) and rew.shape == cost.shape == (3, 7)
    assert rew.min() >= -0.1 and rew.max() <= 0.1 and cost.min() >= 0.0 and cost.max() <= 0.5


def run_main(module, cwd, **fields):
    os.makedirs(cwd)
    os.chdir(cwd)
    base = dict(
        env_id="SafetyHalfCheetahVelocity-v1", num_envs=2, num_steps=250, total_timesteps=1500, eval_episodes=0, seed=5
    )
    module.main(module.Args(**{**base, **fields}))
    return read_progress(only_run_dir(cwd))


@pytest.mark.slow
@pytest.mark.parametrize("switch_off", [{"model_rollouts": 0}, {"model_start_iter": 0, "imagination_min_skill": 1.0}])
def test_imagination_switched_off_is_exactly_cppo(tmp_path, monkeypatch, switch_off):
    # PointGoal1 with a low limit and a short cost window: episodes end, the window and lambda act, and the rows
    # must still be equal.
    # Off: no imagined rollouts, or a skill gate no model passes (skill <= 1).
    monkeypatch.chdir(tmp_path)
    cost = dict(
        env_id="SafetyPointGoal1-v0",
        num_steps=125,  # 3 rollouts of 2 x 125 decisions of 8 steps (the default on navigation tasks)
        total_timesteps=6000,
        cost_limit=2.0,
        cost_window=2,
    )
    cppo = load_script("cppo")
    cppo_rows = run_main(cppo, tmp_path / "cppo", **cost)
    dyna_rows = run_main(dyna, tmp_path / "dyna", **switch_off, **cost)
    assert all(float(r["imagined/on"]) == 0.0 for r in dyna_rows)
    shared = [k for k in cppo_rows[0] if k in dyna_rows[0] and k != "sps" and not k.startswith("time_")]
    assert len(shared) >= 25
    assert [{k: r[k] for k in shared} for r in cppo_rows] == [{k: r[k] for k in shared} for r in dyna_rows]
    assert np.isfinite(float(dyna_rows[-1]["model/k_step_error"]))  # the model still trains and is measured
    assert any(float(r["lagrange_multiplier"]) > 0 for r in cppo_rows) and int(cppo_rows[-1]["cost_estimate_episodes"])
    assert all(float(row["cost_limit"]) == 2.0 for row in cppo_rows)


def test_cppo_update_is_cppos_line_for_line():
    # The CPPO part of dyna_cppo.py is a copy of cppo.py's: the same source, piece by piece, and the same
    # shared arguments with the same defaults.
    cppo = load_script("cppo")
    for name in (
        "plane_solution",
        "solve_with_repair",
        "solve_target_ratio",
        "m_step_loss",
        "gaussian_kl",
        "scale_step_to_kl",
        "CostWindow",
        "cppo_update",
        "PIDLagrangeMultiplier",
        "bootstrap_values",
        "advantages_batch",
        "compute_gae",
        "RunningMeanStd",
        "Actor",
        "Critic",
        "final_evaluation",
        "task_layout",
        "repeat_layout",
    ):
        assert top_level_source(dyna.__file__, name) == top_level_source(cppo.__file__, name), name
    cppo_fields = {f.name: f.default for f in dataclasses.fields(cppo.Args) if f.name != "exp_name"}
    dyna_fields = {f.name: f.default for f in dataclasses.fields(dyna.Args)}
    assert all(dyna_fields[k] == v for k, v in cppo_fields.items())


@pytest.mark.slow
def test_lambda_comes_from_real_episodes_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = run_main(
        dyna,
        tmp_path / "run",
        num_steps=500,
        total_timesteps=3000,
        model_start_iter=0,
        model_rollouts=64,
        imagination_min_skill=-1e9,
        cost_limit=0.5,
    )
    costs, weights = [], []  # J_c: the window (32, more than ever end here) of every real episode so far
    pid = dyna.PIDLagrangeMultiplier(0.8 * 0.5, 0.0, 0.1, 0.01, 0.01)  # the defaults, aimed at 0.8 d
    for row in rows:
        if int(row["episodes"]) > 0:
            costs.append(float(row["episodic_cost"]))
            weights.append(int(row["episodes"]))
            pid.update(np.average(costs, weights=weights))
        assert float(row["lagrange_multiplier"]) == pytest.approx(pid.value)
        assert int(row["cost_estimate_episodes"]) == sum(weights)
    assert all(np.isfinite(float(r["imagined/return"])) for r in rows[1:])  # the first has no skill measured


def test_the_gate_imagines_only_while_the_model_beats_the_baselines():
    args = dyna.Args(model_start_iter=5, imagination_min_skill=0.0)
    assert dyna.imagination_on(0.3, 6, args)
    assert not dyna.imagination_on(0.3, 5, args)  # still warming up
    for skill in (0.0, -0.4, math.nan):  # no better than a baseline, worse, not measured yet
        assert not dyna.imagination_on(skill, 6, args)
    assert not dyna.imagination_on(0.3, 6, dyna.Args(imagination_min_skill=0.5))
    assert not dyna.imagination_on(0.9, 6, dyna.Args(model_rollouts=0))
    assert not dyna.imagination_on(0.0, 6, dyna.Args())  # the default gate: the model must beat the baselines
    assert dyna.imagination_on(-0.4, 6, dyna.Args(imagination_min_skill=-math.inf))  # Algorithm 1 as written


@pytest.mark.slow
def test_imagined_updates_run_and_stay_in_their_trust_region(tmp_path, monkeypatch):
    """With the gate open (a threshold every model passes), imagination runs from the first update with a trust
    region of --imagined-kl-frac * delta and, with --no-imagined-critics, without training the critics; its KL
    stays within that region (its M-step is the paper's regression, which stops once past it: one epoch's overshoot)."""
    monkeypatch.chdir(tmp_path)
    calls, update = [], dyna.cppo_update  # what main() hands the update: real (step scaled) or imagined

    def recording_update(*a, **kw):
        calls.append((kw.get("scale_step", True), a[7].max_kl, kw.get("train_critics", True), a[7].m_step))
        return update(*a, **kw)

    monkeypatch.setattr(dyna, "cppo_update", recording_update)
    rows = run_main(
        dyna,
        tmp_path / "run",
        model_start_iter=0,
        model_rollouts=64,
        imagination_min_skill=-1e9,
        imagined_kl_frac=0.25,
        imagined_critics=False,
    )
    on = [r for r in rows if float(r["imagined/on"]) == 1.0]
    assert len(on) == len(rows) - 1  # all but the first: no skill is measured before the model has trained
    delta = dyna.Args().max_kl
    assert [c for c in calls if c[0]] == [(True, delta, True, "clip")] * len(rows)  # real updates: the whole of delta
    assert [c for c in calls if not c[0]] == [(False, 0.25 * delta, False, "regress")] * len(on)  # imagined: F delta
    assert all(float(r["imagined/kl"]) <= 2 * 0.25 * delta for r in on)


@pytest.mark.parametrize("train_critics", [False, True])
def test_the_critics_learn_from_a_batch_only_when_asked(train_critics):
    torch.manual_seed(0)
    n, obs_dim, act_dim = 400, 5, 2
    actor, critic, cost_critic = dyna.Actor(obs_dim, act_dim), dyna.Critic(obs_dim), dyna.Critic(obs_dim)
    obs = torch.randn(n, obs_dim)
    with torch.no_grad():
        old_mean = actor.mean(obs)
        act = old_mean + actor.log_std.exp() * torch.randn(n, act_dim)
        logp = actor.log_prob(obs, act)
    batch = {
        "obs": obs,
        "act": act,
        "logp": logp,
        "old_mean": old_mean,
        "adv": torch.randn(n),
        "cost_adv": torch.randn(n),
        "ret": 5 + torch.randn(n),
        "cost_ret": torch.rand(n),
    }
    critic_params = list(critic.parameters()) + list(cost_critic.parameters())
    before = [p.detach().clone() for p in critic_params]
    actor_before = [p.detach().clone() for p in actor.parameters()]
    optimizer = torch.optim.Adam(actor.parameters(), lr=3e-4)
    critic_optimizer = torch.optim.Adam(critic_params, lr=1e-3)
    stats = dyna.cppo_update(
        actor,
        critic,
        cost_critic,
        optimizer,
        critic_optimizer,
        batch,
        0.0,
        dyna.Args(num_minibatches=4),
        scale_step=False,
        train_critics=train_critics,
    )
    moved = any(not torch.equal(a, b) for a, b in zip(before, critic_params))
    assert moved == train_critics
    assert math.isfinite(stats["value_loss"]) == train_critics
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, actor.parameters()))  # the policy moves either way


def test_an_imagined_cost_is_the_probability_of_a_cost_times_the_mean_positive_cost():
    # With held actions a decision's cost sums its steps' (0..4 on navigation): the classifier gives P(cost > 0),
    # and learn() sets the size of a cost to the mean positive cost in D_real.
    logit = math.log(0.25 / 0.75)  # p = 0.25 everywhere
    run = lambda size: dyna.imagine(
        dyna.DynamicsModel(3, 2, 8, torch.Generator().manual_seed(0)),
        classifier_of(3, bias=logit),
        dyna.Actor(3, 2),
        torch.zeros(5, 3),
        2,
        -torch.ones(2),
        torch.ones(2),
        (-1.0, 1.0),
        (0.0, 4.0),
        torch.Generator().manual_seed(1),
        size,
    )[3]
    assert torch.allclose(run(1.0), torch.full((2, 5), 0.25)) and torch.allclose(run(2.5), torch.full((2, 5), 0.625))
    args = dyna.Args(env_id="SafetyHalfCheetahVelocity-v1", num_steps=4, multi_step_k=2, model_steps=1)
    model = dyna.Dyna(3, 2, np.full(2, -1.0), np.ones(2), args, "cpu")
    assert model.cost_size == 1.0  # before any data
    rms = dyna.RunningMeanStd(3)
    rms.update(np.random.default_rng(0).standard_normal((16, 3)))
    costs = [np.array([[0.0, 2.0], [1.0, 0.0], [0.0, 0.0], [3.0, 0.0]]), np.array([[0.0, 0.0], [4.0, 0.0]] * 2)]
    for cost in costs:
        rollout = dict(obs=np.zeros((4, 2, 3), np.float32), act=np.zeros((4, 2, 2)), rew=np.zeros((4, 2), np.float32))
        rollout |= dict(cost=cost.astype(np.float32), next_obs=np.zeros((4, 2, 3), np.float32), done=np.zeros((4, 2)))
        model.learn(rollout, rms, args, "cpu")
    assert model.cost_size == pytest.approx((2 + 1 + 3 + 4 + 4) / 5)
