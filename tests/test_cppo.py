"""cppo.py kernels: the E-step's constraints and optimality on hand-made and random inputs, its cost boundary at the
angle of A/|A| - lambda A_c/|A_c|, the cost window, lambda's PID, the M-step (PPO's clipped surrogate on v - 1, or
the paper's regression) and its scaling to the trust region."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from conftest import load_script, only_run_dir, read_progress, top_level_source

cppo = load_script("cppo")
DELTA = 0.02


def radius(n, delta=DELTA):
    return math.sqrt(n * delta / (2 * math.log(2) - 1))


def assert_constraints(v, adv, cost_adv, margin, delta=DELTA, cost_must_hold=True):
    n = len(v)
    v_bar = (v - 1).double()
    assert torch.isfinite(v).all()
    assert abs(v_bar.sum().item()) < 1e-8 * max(1.0, n)
    assert v_bar.norm().item() <= radius(n, delta) * (1 + 1e-9)
    assert (v > 0).all()
    if cost_must_hold:
        c = (cost_adv - cost_adv.mean()).double()
        assert (v_bar @ c).item() <= n * margin + 1e-8 * (1 + abs(n * margin))


def random_case(rng, n, correlation):
    """Centred (A, A_c) with a chosen correlation, as torch tensors."""
    a_c = rng.normal(size=n)
    a = correlation * a_c + math.sqrt(1 - correlation**2) * rng.normal(size=n)
    a, a_c = a - a.mean(), a_c - a_c.mean()
    return torch.tensor(a), torch.tensor(a_c)


def weight_for(adv, cost_adv, kappa):
    """The lambda whose cost boundary has cosine kappa: kappa = (c - lambda) / sqrt((c - lambda)^2 + 1 - c^2) inverted
    (kappa beyond +-1 is taken just inside: a boundary that leaves every point, or none but -A_c, feasible)."""
    a, c_adv = (adv - adv.mean()).double(), (cost_adv - cost_adv.mean()).double()
    c = (a @ c_adv).item() / max(a.norm().item() * c_adv.norm().item(), 1e-12)
    k = min(max(kappa, -1 + 1e-12), 1 - 1e-12)
    return c - k * math.sqrt(max(0.0, 1 - c * c)) / math.sqrt(1 - k * k)


def solve(adv, cost_adv, kappa, delta=DELTA):
    """The E-step at the lambda of boundary kappa; also its budget as a per-sample margin (b = N margin)."""
    v, info = cppo.solve_target_ratio(adv, cost_adv, weight_for(adv, cost_adv, kappa), delta)
    c_norm = (cost_adv - cost_adv.mean()).double().norm().item()
    return v, info, max(-1.0, min(1.0, kappa)) * radius(len(adv), delta) * c_norm / len(adv)


@pytest.mark.parametrize("seed", range(40))
def test_e_step_constraints_hold_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([3, 10, 64, 500, 4000]))
    adv, cost_adv = random_case(rng, n, rng.uniform(-0.99, 0.99))
    adv, cost_adv = adv * rng.uniform(0.01, 100), cost_adv * rng.uniform(0.01, 100)
    kappa_target = rng.choice([2.0, 0.5, 0.0, -0.5, -0.95, -3.0])  # all feasible ... only -A_c
    v, _, margin = solve(adv, cost_adv, kappa_target)
    # The cost constraint must hold when it is feasible with room to spare (the element-wise repair v > 0 can use
    # up the room when the boundary is nearly tangent to the sphere); the other constraints hold always.
    assert_constraints(v, adv, cost_adv, margin, cost_must_hold=kappa_target >= -0.5)


@pytest.mark.parametrize("case", ["zero cost", "tiny cost", "parallel", "anti-parallel", "zero reward", "n=1", "n=2"])
def test_e_step_degenerate_inputs_give_no_nan(case):
    rng = np.random.default_rng(0)
    adv, cost_adv = random_case(rng, 50, 0.3)
    weight = 0.5
    if case == "zero cost":
        cost_adv = torch.zeros(50, dtype=torch.float64)
    elif case == "tiny cost":
        cost_adv = cost_adv * 1e-14
    elif case == "parallel":
        cost_adv, weight = 3.0 * adv, 2.0  # lambda > cos(theta_A) = 1: reward cannot rise without cost
    elif case == "anti-parallel":
        cost_adv = -0.5 * adv
    elif case == "zero reward":
        adv = torch.zeros(50, dtype=torch.float64)
    elif case == "n=1":
        adv, cost_adv = torch.tensor([1.0]), torch.tensor([2.0])
    elif case == "n=2":
        adv, cost_adv = torch.tensor([1.0, -1.0]), torch.tensor([1.0, -1.0])
    v, info = cppo.solve_target_ratio(adv, cost_adv, weight, DELTA)
    n, c_norm = len(adv), (cost_adv - cost_adv.mean()).double().norm().item()
    margin = max(-1.0, min(1.0, info["kappa"])) * radius(n) * c_norm / n if c_norm > 0 else math.inf
    assert_constraints(v, adv, cost_adv, margin, cost_must_hold=case not in ("n=2",))
    v_bar = (v - 1).double()
    if case in ("zero cost", "tiny cost"):  # a plain reward step: v_bar parallel to A, on the sphere
        assert torch.nn.functional.cosine_similarity(v_bar, adv.double(), dim=0) > 1 - 1e-9
    if case in ("parallel", "zero reward"):  # nothing to trade: the step lowers cost
        assert (v_bar @ cost_adv.double()).item() < 0


def test_e_step_known_answer_in_two_dimensions():
    # N = 3, A and A_c orthogonal and centred: the solution is a rotation in their plane by arccos(kappa).
    adv = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
    cost_adv = torch.tensor([1.0, 1.0, -2.0], dtype=torch.float64)
    R = radius(3, 0.002)  # small enough that no element bound is active
    v, info = cppo.solve_target_ratio(adv, cost_adv, 1.0, 0.002)  # lambda = 1: theta = pi/2 + atan(1)
    theta = 0.75 * math.pi
    expected = R * (math.cos(theta) * cost_adv / cost_adv.norm() + math.sin(theta) * adv / adv.norm())
    torch.testing.assert_close((v - 1).double(), expected)
    assert info["kappa"] == pytest.approx(-math.sqrt(0.5)) and info["theta"] == pytest.approx(theta)


@pytest.mark.parametrize("correlation", [-0.6, 0.0, 0.3, 0.9])
@pytest.mark.parametrize("weight", [0.0, 0.5, 3.0, 1e6])
def test_e_step_steps_along_the_lagrangian_direction(correlation, weight):
    # Without element bounds the solution is R (A/|A| - lambda A_c/|A_c|) normalised (for lambda >= 0 the boundary
    # lies beyond theta_A, so it binds); lambda = 0 is the reward step, lambda -> inf -A_c.
    rng = np.random.default_rng(4)
    adv, cost_adv = random_case(rng, 200, correlation)
    v, info = cppo.solve_target_ratio(adv, cost_adv, weight, 0.002)
    direction = adv / adv.norm() - weight * cost_adv / cost_adv.norm()
    torch.testing.assert_close((v - 1).double(), radius(200, 0.002) * direction / direction.norm())
    assert info["theta"] >= theta_a_of(adv, cost_adv) - 1e-9


def slsqp_optimum(adv, cost_adv, margin, delta):
    a, c = adv.numpy(), cost_adv.numpy()
    n = len(a)
    cons = [
        {"type": "eq", "fun": lambda x: x.sum(), "jac": lambda x: np.ones(n)},
        {"type": "ineq", "fun": lambda x: n * margin - x @ c, "jac": lambda x: -c},
        {"type": "ineq", "fun": lambda x: radius(n, delta) ** 2 - x @ x, "jac": lambda x: -2 * x},
    ]
    best = None
    for start in range(4):  # a few starts: the problem is convex, this only guards against a bad stop
        x0 = np.random.default_rng(start).normal(size=n) * 1e-3
        res = minimize(
            lambda x: -(x @ a),
            x0,
            jac=lambda x: -a,
            constraints=cons,
            method="SLSQP",
            options={"maxiter": 500, "ftol": 1e-12},
        )
        if res.success and (best is None or -res.fun > best):
            best = -res.fun
    return best


@pytest.mark.parametrize("seed", range(12))
def test_e_step_matches_a_generic_constrained_solver(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(5, 30))
    delta = 0.002  # small radius: no element bound is active, so the 2-D closed form is the whole answer
    adv, cost_adv = random_case(rng, n, rng.uniform(-0.9, 0.9))
    v, _, margin = solve(adv, cost_adv, rng.uniform(-0.9, 0.99), delta)
    assert (v > 0.5).all()  # no element bound active
    ours, reference = ((v - 1).double() @ adv).item(), slsqp_optimum(adv, cost_adv, margin, delta)
    assert reference is not None
    assert ours == pytest.approx(reference, rel=1e-3, abs=1e-9)
    assert_constraints(v, adv, cost_adv, margin, delta)


def test_e_step_is_parallel_to_the_reward_advantage_when_unconstrained_optimum_is_feasible():
    rng = np.random.default_rng(7)
    adv, cost_adv = random_case(rng, 200, 0.5)
    v_bar = (cppo.solve_target_ratio(adv, cost_adv, 0.0, 0.002)[0] - 1).double()  # lambda = 0: no weight on cost
    assert torch.nn.functional.cosine_similarity(v_bar, adv, dim=0).item() > 1 - 1e-9
    assert v_bar.norm().item() == pytest.approx(radius(200, 0.002))


def test_entries_below_the_minimum_ratio_are_repaired_with_exact_bookkeeping():
    # One sample with a huge advantage pushes the others below v = 0 unless repaired.
    n = 20
    adv = torch.full((n,), -1.0, dtype=torch.float64)
    adv[0] = 19.0
    adv[1] = -30.0
    cost_adv = torch.linspace(-1, 1, n, dtype=torch.float64)
    v, info, margin = solve(adv, cost_adv, 0.3, 0.5)
    assert info["clipped_fraction"] > 0
    assert_constraints(v, adv, cost_adv, margin, delta=0.5)
    assert v[1].item() == pytest.approx(cppo.MIN_TARGET_RATIO)


def test_m_step_moves_the_ratio_toward_the_target():
    torch.manual_seed(0)
    actor = cppo.Actor(4, 2)
    obs = torch.randn(1024, 4)
    with torch.no_grad():
        actions = actor.mean(obs) + actor.log_std.exp() * torch.randn(1024, 2)
        old_logp = actor.log_prob(obs, actions)
    adv = actions[:, 0] - actions[:, 0].mean()  # learnable: favour larger first action
    cost_adv = torch.randn(1024)
    v = cppo.solve_target_ratio(adv, cost_adv, 0.0, DELTA)[0].float()
    optimizer = torch.optim.Adam(actor.parameters(), lr=1e-3)

    def fit_error():
        with torch.no_grad():
            return ((actor.log_prob(obs, actions) - old_logp).exp() - v).abs().mean().item()

    before = fit_error()
    for _ in range(50):
        ratio = (actor.log_prob(obs, actions) - old_logp).exp()
        loss = cppo.m_step_loss(ratio, v, cppo.Args(m_step="regress"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fit_error() < 0.9 * before


def test_m_step_loss_floor_stops_pushing_ratios_down():
    assert cppo.RATIO_FLOOR == 0.6
    ratio = torch.tensor([0.5, 0.5, 1.2, 0.9], requires_grad=True)
    target = torch.tensor([0.3, 0.8, 1.0, 1.1])
    cppo.m_step_loss(ratio, target, cppo.Args(m_step="regress")).backward()
    g = ratio.grad * len(ratio)  # d loss / d r_i = -w_i, unless r_i < floor and w_i < 0
    torch.testing.assert_close(g, torch.tensor([0.0, -0.3, 0.2, -0.2]))


def test_clip_m_step_is_ppos_surrogate_on_the_normalised_target():
    # v - 1 = (0.5, -0.5, 0.5, -0.5, -0.5, 0.5): mean 0, std sqrt(0.3), so the advantage is +-sqrt(5/6) = +-0.9129.
    v = torch.tensor([1.5, 0.5, 1.5, 0.5, 0.5, 1.5])
    ratio = torch.tensor([1.0, 1.0, 1.3, 0.7, 1.3, 0.7], requires_grad=True)
    loss = cppo.m_step_loss(ratio, v, cppo.Args(m_step="clip", clip_coef=0.2))
    a = math.sqrt(5 / 6)
    # per sample min(r a, clip(r) a): a, -a, 1.2 a (clipped), -0.8 a (clipped), -1.3 a, 0.7 a
    assert loss.item() == pytest.approx(-(1 - 1 + 1.2 - 0.8 - 1.3 + 0.7) * a / 6, rel=1e-6)
    loss.backward()
    # the clipped samples give no gradient: a ratio is not pushed past 1 +- clip in its advantage's direction
    torch.testing.assert_close(ratio.grad * 6, torch.tensor([-a, a, 0.0, 0.0, a, -a]))


@pytest.mark.parametrize("seed", range(20))
def test_constraints_hold_when_many_entries_are_clipped(seed):
    # Heavy-tailed advantages and a wide trust region: the first solution has many entries below v = 0, and the
    # repair must keep sum, radius and the binding cost constraint exact.
    rng = np.random.default_rng(500 + seed)
    n = 400
    adv = torch.tensor(rng.standard_t(1.5, size=n))
    cost_adv = torch.tensor(0.5 * adv.numpy() + rng.standard_t(1.5, size=n))
    adv, cost_adv = adv - adv.mean(), cost_adv - cost_adv.mean()
    delta = 0.8
    v, info, margin = solve(adv, cost_adv, rng.uniform(-0.3, 0.5), delta)
    assert info["clipped_fraction"] > 0.0
    assert_constraints(v, adv, cost_adv, margin, delta)


def test_repair_keeps_a_binding_cost_constraint_on_its_boundary():
    # The cost constraint binds before and after the repair: the repaired v_bar must still spend exactly the
    # budget (a repair that forgets what the clipped entries and the shift mu spend of it would not).
    rng = np.random.default_rng(11)
    n = 60
    adv = torch.tensor(rng.standard_t(2.0, size=n))
    cost_adv = torch.tensor(0.7 * adv.numpy() + rng.normal(size=n))
    adv, cost_adv = adv - adv.mean(), cost_adv - cost_adv.mean()
    R = radius(n, 0.5)
    budget = 0.1 * R * cost_adv.norm().item()
    v_bar, theta, kappa, clipped = cppo.solve_with_repair(adv, cost_adv, R, budget)
    assert clipped > 0 and math.cos(theta) == pytest.approx(kappa)  # binding, repaired
    assert (v_bar @ cost_adv).item() == pytest.approx(budget, rel=1e-9)
    assert v_bar.sum().item() == pytest.approx(0.0, abs=1e-9) and v_bar.norm().item() <= R * (1 + 1e-12)


def theta_a_of(adv, cost_adv):
    u_c = cost_adv / cost_adv.norm()
    a_c = (adv @ u_c).item()
    return math.atan2((adv - a_c * u_c).norm().item(), a_c)


def test_lambdas_pid_is_ppo_lagrangians():
    # The same class, line for line; its behaviour (windup, letting go) is tested in test_ppo_lagrangian.py.
    assert top_level_source(cppo.__file__, "PIDLagrangeMultiplier") == top_level_source(
        load_script("ppo_lagrangian").__file__, "PIDLagrangeMultiplier"
    )


def test_cost_window_is_the_mean_of_the_last_episodes():
    window = cppo.CostWindow(3)
    assert math.isnan(window.mean)
    assert window.add([10.0]) == 10.0
    assert window.add([20.0, 30.0, 40.0]) == pytest.approx(30.0)  # 20, 30, 40: the 10 has left
    assert window.add([]) == pytest.approx(30.0)


def synthetic_batch(n=2000, obs_dim=6, act_dim=2, seed=0):
    """A batch like PointGoal1's: reward advantages mostly per-sample noise the policy cannot express."""
    torch.manual_seed(seed)
    actor = cppo.Actor(obs_dim, act_dim)
    obs = torch.randn(n, obs_dim)
    with torch.no_grad():
        old_mean = actor.mean(obs)
        act = old_mean + actor.log_std.exp() * torch.randn(n, act_dim)
        logp = actor.log_prob(obs, act)
    adv = 0.2 * (act[:, 0] - old_mean[:, 0]) + torch.randn(n)
    batch = {
        "obs": obs,
        "act": act,
        "logp": logp,
        "old_mean": old_mean,
        "adv": adv,
        "cost_adv": torch.randn(n),
        "ret": torch.zeros(n),
        "cost_ret": torch.zeros(n),
    }
    return actor, batch


def updater(actor, obs_dim=6, lr=3e-4):
    """cppo_update of `actor` with fresh critics and optimizers kept across calls: update(batch, lambda, args, **kw)."""
    critic, cost_critic = cppo.Critic(obs_dim), cppo.Critic(obs_dim)
    optimizer = torch.optim.Adam(actor.parameters(), lr=lr, eps=1e-5)
    critic_optimizer = torch.optim.Adam(list(critic.parameters()) + list(cost_critic.parameters()), lr=1e-3)
    return lambda batch, weight, args, **kw: cppo.cppo_update(
        actor, critic, cost_critic, optimizer, critic_optimizer, batch, weight, args, **kw
    )


@pytest.mark.parametrize("max_step_scale", [0.0, 10.0])
def test_kl_scaled_m_step_reaches_the_kl_budget(max_step_scale):
    actor, batch = synthetic_batch()
    args = cppo.Args(m_step="regress", max_step_scale=max_step_scale, num_minibatches=8)
    stats = updater(actor)(batch, 0.0, args)
    with torch.no_grad():
        kl = (
            cppo.gaussian_kl(batch["old_mean"], torch.full((2,), -0.5), actor.mean(batch["obs"]), actor.log_std)
            .mean()
            .item()
        )
    assert stats["cppo/fit_kl"] < 0.2 * DELTA  # the regression alone stops far inside the trust region
    assert kl == pytest.approx(stats["kl"])
    if max_step_scale == 0:
        assert stats["cppo/step_scale"] == 1.0 and kl == pytest.approx(stats["cppo/fit_kl"])
    else:
        assert 0.5 * DELTA <= kl <= DELTA and stats["cppo/step_scale"] > 1


@pytest.mark.parametrize("learning_rate", [3e-5, 3e-2])
def test_clip_m_step_runs_every_epoch_and_is_scaled_to_the_kl_budget(learning_rate):
    # A small learning rate fits far inside the trust region (scaled up), a large one past it (scaled down): either
    # way every epoch runs (no KL stop) and the step ends within [0.5 delta, delta].
    actor, batch = synthetic_batch()
    args = cppo.Args(m_step="clip", num_minibatches=8, max_step_scale=10.0)
    stats = updater(actor, lr=learning_rate)(batch, 0.0, args)
    assert stats["cppo/m_step_epochs"] == args.update_epochs
    assert 0.5 * DELTA <= stats["kl"] <= DELTA
    if learning_rate < 1e-4:
        assert stats["cppo/fit_kl"] < 0.5 * DELTA and stats["cppo/step_scale"] > 1
    else:
        assert stats["cppo/fit_kl"] > DELTA and stats["cppo/step_scale"] < 1


def test_task_defaults_follow_the_task_and_keep_a_rollout_of_8000_env_steps():
    # Navigation tasks: the clipped fit's own step, each action held for 8 env steps, 16 minibatches (~62 decisions
    # each, as 2000 / 32 with 4 steps). Velocity tasks: the step scaled to delta, every step acted on, 32. A given
    # value stays.
    keys = ("max_step_scale", "action_repeat", "num_envs", "num_steps", "num_minibatches")
    layout = lambda **kw: tuple(
        getattr(cppo.env_layout(cppo.repeat_layout(cppo.task_layout(cppo.Args(**kw)))), k) for k in keys
    )
    assert layout(env_id="SafetyPointGoal1-v0") == (0.0, 8, 2, 500, 16)
    assert layout(env_id="SafetyPointCircle1-v0") == (0.0, 8, 2, 500, 16)
    assert layout(env_id="SafetyHalfCheetahVelocity-v1") == (10.0, 1, 8, 1000, 32)
    given = dict(max_step_scale=3.0, action_repeat=4, num_minibatches=32)
    assert layout(env_id="SafetyPointGoal1-v0", **given) == (3.0, 4, 2, 1000, 32)


def test_scale_step_to_kl_shrinks_a_step_that_overshoots():
    torch.manual_seed(2)
    actor = cppo.Actor(4, 2)
    obs = torch.randn(500, 4)
    old_params = [p.detach().clone() for p in actor.parameters()]
    with torch.no_grad():
        old_mean, old_log_std = actor.mean(obs), actor.log_std.clone()
        for p in actor.parameters():
            p.add_(0.5 * torch.randn_like(p))  # far outside the trust region
        assert cppo.gaussian_kl(old_mean, old_log_std, actor.mean(obs), actor.log_std).mean() > 0.2
    scale, kl = cppo.scale_step_to_kl(actor, old_params, obs, old_mean, old_log_std, DELTA, max_scale=10.0)
    with torch.no_grad():
        now = cppo.gaussian_kl(old_mean, old_log_std, actor.mean(obs), actor.log_std).mean().item()
    assert 0 < scale < 1 and now == pytest.approx(kl) and 0.9 * DELTA <= now <= DELTA


@pytest.mark.slow
def test_lambda_follows_the_measured_cost(tmp_path, monkeypatch):
    # A limit of 2 on PointGoal1 with a random policy and a window of 2 episodes: J_c is above the set point (0.8 d)
    # most of the time, and with kp 1 lambda passes 1 at once. The logged lambda must be the PID replayed on the
    # logged J_c, and the E-step's boundary must bend well toward -A_c (kappa < -0.5) while lambda > 1.
    monkeypatch.chdir(tmp_path)
    args = cppo.Args(
        num_envs=2,
        num_steps=125,
        total_timesteps=8000,
        eval_episodes=0,
        cost_limit=2.0,
        seed=2,
        cost_window=2,
        pid_kp=1,
    )
    cppo.main(args)
    rows = read_progress(only_run_dir(tmp_path))
    pid = cppo.PIDLagrangeMultiplier(0.8 * 2.0, 0.0, args.pid_kp, args.pid_ki, args.pid_kd)
    episodes = 0
    for row in rows:
        if int(row["cost_estimate_episodes"]) and float(row["episodes"]) > 0:
            pid.update(float(row["cost_estimate"]))
        episodes += int(float(row["episodes"]))
        assert float(row["lagrange_multiplier"]) == pytest.approx(pid.value)
        assert -1 - 1e-9 <= float(row["cppo/kappa"])
    assert episodes > 0 and max(float(r["lagrange_multiplier"]) for r in rows) > 1.0
    assert all(float(r["cppo/kappa"]) < -0.5 for r in rows if float(r["lagrange_multiplier"]) > 1.0)
