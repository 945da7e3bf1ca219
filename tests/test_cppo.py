"""cppo.py kernels: the E-step's constraints and optimality on hand-made and random inputs, the recovery angle
(theta_f from kappa), the cost gain, the cost window, the M-step and its scaling to the trust region and the
recovery switch."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from conftest import load_script, only_run_dir, read_progress

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


def kappa_of(adv, cost_adv, margin, n):
    return n * margin / (radius(n) * cost_adv.norm().item())


@pytest.mark.parametrize("seed", range(40))
def test_e_step_constraints_hold_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([3, 10, 64, 500, 4000]))
    adv, cost_adv = random_case(rng, n, rng.uniform(-0.99, 0.99))
    adv, cost_adv = adv * rng.uniform(0.01, 100), cost_adv * rng.uniform(0.01, 100)
    kappa_target = rng.choice([2.0, 0.5, 0.0, -0.5, -0.95, -3.0])  # feasible ... infeasible
    margin = kappa_target * radius(n) * cost_adv.norm().item() / n
    v, _ = cppo.solve_target_ratio(adv, cost_adv, margin, DELTA)
    # The cost constraint must hold when it is feasible with room to spare (the element-wise repair v > 0 can use
    # up the room when the boundary is nearly tangent to the sphere); the other constraints hold always.
    assert_constraints(v, adv, cost_adv, margin, cost_must_hold=kappa_target >= -0.5)


@pytest.mark.parametrize("case", ["zero cost", "tiny cost", "parallel", "anti-parallel", "zero reward", "n=1", "n=2"])
def test_e_step_degenerate_inputs_give_no_nan(case):
    rng = np.random.default_rng(0)
    adv, cost_adv = random_case(rng, 50, 0.3)
    margin = 0.01
    if case == "zero cost":
        cost_adv = torch.zeros(50, dtype=torch.float64)
    elif case == "tiny cost":
        cost_adv = cost_adv * 1e-14
    elif case == "parallel":
        cost_adv = 3.0 * adv
        margin = -0.2 * radius(50) * cost_adv.norm().item() / 50  # binding: the step must lower cost
    elif case == "anti-parallel":
        cost_adv = -0.5 * adv
    elif case == "zero reward":
        adv = torch.zeros(50, dtype=torch.float64)
        margin = -0.3 * radius(50) * cost_adv.norm().item() / 50
    elif case == "n=1":
        adv, cost_adv = torch.tensor([1.0]), torch.tensor([2.0])
    elif case == "n=2":
        adv, cost_adv = torch.tensor([1.0, -1.0]), torch.tensor([1.0, -1.0])
        margin = -0.5
    v, _ = cppo.solve_target_ratio(adv, cost_adv, margin, DELTA)
    assert_constraints(v, adv, cost_adv, margin, cost_must_hold=case not in ("n=2",))
    if case in ("zero cost", "tiny cost"):  # a plain reward step: v_bar parallel to A, on the sphere
        v_bar = (v - 1).double()
        assert torch.nn.functional.cosine_similarity(v_bar, adv.double(), dim=0) > 1 - 1e-9
    if case == "parallel":  # the constraint binds exactly, with the smallest step
        assert ((v - 1).double() @ cost_adv).item() == pytest.approx(50 * margin, rel=1e-6)


def test_e_step_known_answer_in_two_dimensions():
    # N = 3, A and A_c orthogonal and centred: the solution is a rotation in their plane by arccos(kappa).
    adv = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
    cost_adv = torch.tensor([1.0, 1.0, -2.0], dtype=torch.float64)
    R = radius(3, 0.002)  # small enough that no element bound is active
    kappa = -0.5
    margin = kappa * R * cost_adv.norm().item() / 3
    v, _ = cppo.solve_target_ratio(adv, cost_adv, margin, 0.002)
    theta = math.acos(kappa)
    expected = R * (math.cos(theta) * cost_adv / cost_adv.norm() + math.sin(theta) * adv / adv.norm())
    torch.testing.assert_close((v - 1).double(), expected)


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
    kappa = rng.uniform(-0.9, 1.2)
    margin = kappa * radius(n, delta) * cost_adv.norm().item() / n
    v, _ = cppo.solve_target_ratio(adv, cost_adv, margin, delta)
    assert (v > 0.5).all()  # no element bound active
    ours, reference = ((v - 1).double() @ adv).item(), slsqp_optimum(adv, cost_adv, margin, delta)
    assert reference is not None
    assert ours == pytest.approx(reference, rel=1e-3, abs=1e-9)
    assert_constraints(v, adv, cost_adv, margin, delta)


def test_e_step_is_parallel_to_the_reward_advantage_when_unconstrained_optimum_is_feasible():
    rng = np.random.default_rng(7)
    adv, cost_adv = random_case(rng, 200, 0.5)
    margin = 10.0  # plenty of cost room
    v_bar = (cppo.solve_target_ratio(adv, cost_adv, margin, 0.002)[0] - 1).double()
    assert torch.nn.functional.cosine_similarity(v_bar, adv, dim=0).item() > 1 - 1e-9
    assert v_bar.norm().item() == pytest.approx(radius(200, 0.002))


@pytest.mark.parametrize("correlation", [-0.8, 0.0, 0.5, 0.95])
def test_recovery_lowers_cost_first(correlation):
    rng = np.random.default_rng(3)
    adv, cost_adv = random_case(rng, 300, correlation)
    v, info = cppo.solve_target_ratio(adv, cost_adv, 1.0, DELTA, recovery=True)
    kappa = 300 * 1.0 / (radius(300) * cost_adv.norm().item())  # plenty of room: theta_f ~ 0
    expected = min(math.pi, max(math.acos(min(1.0, kappa)), theta_a_of(adv, cost_adv) + math.pi / 2))
    assert info["recovery"] == 1.0 and info["theta"] == pytest.approx(expected)
    assert ((v - 1).double() @ cost_adv).item() < 0
    assert_constraints(v, adv, cost_adv, 1.0, cost_must_hold=False)
    # and an infeasible margin switches to recovery by itself
    _, info = cppo.solve_target_ratio(adv, cost_adv, -1e3, DELTA)
    assert info["recovery"] == 1.0


def test_entries_below_the_minimum_ratio_are_repaired_with_exact_bookkeeping():
    # One sample with a huge advantage pushes the others below v = 0 unless repaired.
    n = 20
    adv = torch.full((n,), -1.0, dtype=torch.float64)
    adv[0] = 19.0
    adv[1] = -30.0
    cost_adv = torch.linspace(-1, 1, n, dtype=torch.float64)
    v, info = cppo.solve_target_ratio(adv, cost_adv, 0.05, 0.5)
    assert info["clipped_fraction"] > 0
    assert_constraints(v, adv, cost_adv, 0.05, delta=0.5)
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
    v = cppo.solve_target_ratio(adv, cost_adv, 1.0, DELTA)[0].float()
    optimizer = torch.optim.Adam(actor.parameters(), lr=1e-3)

    def fit_error():
        with torch.no_grad():
            return ((actor.log_prob(obs, actions) - old_logp).exp() - v).abs().mean().item()

    before = fit_error()
    for _ in range(50):
        ratio = (actor.log_prob(obs, actions) - old_logp).exp()
        loss = cppo.m_step_loss(ratio, v, 0.6)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fit_error() < 0.9 * before


def test_m_step_loss_floor_stops_pushing_ratios_down():
    ratio = torch.tensor([0.5, 0.5, 1.2, 0.9], requires_grad=True)
    target = torch.tensor([0.3, 0.8, 1.0, 1.1])
    cppo.m_step_loss(ratio, target, ratio_floor=0.6).backward()
    g = ratio.grad * len(ratio)  # d loss / d r_i = -w_i, unless r_i < floor and w_i < 0
    torch.testing.assert_close(g, torch.tensor([0.0, -0.3, 0.2, -0.2]))


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
    margin = rng.uniform(-0.3, 0.5) * radius(n, delta) * cost_adv.norm().item() / n
    v, info = cppo.solve_target_ratio(adv, cost_adv, margin, delta)
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
    v_bar, theta, kappa, recovered, clipped = cppo.solve_with_repair(adv, cost_adv, R, budget, False, math.pi)
    assert clipped > 0 and not recovered and math.cos(theta) == pytest.approx(kappa)  # binding, repaired
    assert (v_bar @ cost_adv).item() == pytest.approx(budget, rel=1e-9)
    assert v_bar.sum().item() == pytest.approx(0.0, abs=1e-9) and v_bar.norm().item() <= R * (1 + 1e-12)


def theta_a_of(adv, cost_adv):
    u_c = cost_adv / cost_adv.norm()
    a_c = (adv @ u_c).item()
    return math.atan2((adv - a_c * u_c).norm().item(), a_c)


def test_feasible_angle_is_the_edge_of_the_feasible_cap():
    assert cppo.feasible_angle(0.5) == pytest.approx(math.pi / 3)
    assert cppo.feasible_angle(0.0) == pytest.approx(math.pi / 2)
    assert cppo.feasible_angle(-3.0) == pytest.approx(math.pi)  # nothing on the sphere is feasible
    assert cppo.feasible_angle(3.0) == 0.0  # all of it is


@pytest.mark.parametrize(
    "kappa, case",
    [
        (-0.9, "no reward-keeping direction is feasible"),
        (0.5, "feasible directions keep reward"),
        (-2.0, "nothing feasible"),
    ],
)
def test_recovery_angle_is_the_papers_clip(kappa, case):
    # theta = clip(theta, max(theta_f, theta_A + pi/2), pi), theta_f = arccos(kappa): with A close to A_c
    # (theta_A ~ 0.45), theta_A + pi/2 ~ 2.0 rad. kappa -0.9 puts the feasible cap beyond it (theta_f ~ 2.69:
    # the paper's case 2, least reward lost within the feasible region), kappa 0.5 inside it (theta_f ~ 1.05:
    # case 1, the zero-reward boundary), kappa -2 nowhere (pi).
    rng = np.random.default_rng(5)
    adv, cost_adv = random_case(rng, 400, 0.9)
    theta_a = theta_a_of(adv, cost_adv)
    margin = kappa * radius(400) * cost_adv.norm().item() / 400
    v, info = cppo.solve_target_ratio(adv, cost_adv, margin, DELTA, recovery=True)
    expected = min(math.pi, max(math.acos(max(-1.0, kappa)), theta_a + math.pi / 2))
    assert info["recovery"] == 1.0 and info["kappa"] == pytest.approx(kappa)
    assert info["theta"] == pytest.approx(expected)
    assert ((v - 1).double() @ cost_adv).item() < 0  # recovery lowers cost
    if kappa == -0.9:
        assert info["theta"] == pytest.approx(math.acos(-0.9))  # on the feasible boundary
        assert ((v - 1).double() @ cost_adv).item() == pytest.approx(400 * margin, rel=1e-9)


def test_cost_gain_scales_kappa_and_turns_a_small_violation_into_recovery():
    rng = np.random.default_rng(8)
    adv, cost_adv = random_case(rng, 300, 0.0)
    margin = -0.3 * radius(300) * cost_adv.norm().item() / 300  # a small violation: kappa = -0.3
    _, plain = cppo.solve_target_ratio(adv, cost_adv, margin, DELTA)
    v, gained = cppo.solve_target_ratio(adv, cost_adv, margin, DELTA, cost_gain=4.0)
    assert plain["kappa"] == pytest.approx(-0.3) and gained["kappa"] == pytest.approx(-1.2)
    assert plain["recovery"] == 0.0 and plain["theta"] == pytest.approx(math.acos(-0.3))  # a slight bend
    assert gained["recovery"] == 1.0 and gained["theta"] == pytest.approx(math.pi)  # all cost descent
    _, room = cppo.solve_target_ratio(adv, cost_adv, -margin, DELTA, cost_gain=4.0)  # under the limit: kappa 1.2, free
    assert room["kappa"] == pytest.approx(1.2) and room["theta"] == pytest.approx(theta_a_of(adv, cost_adv))


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


def updater(actor, obs_dim=6):
    """cppo_update of `actor` with fresh critics and optimizers kept across calls: update(batch, margin, args,
    **kw), never in forced recovery."""
    critic, cost_critic = cppo.Critic(obs_dim), cppo.Critic(obs_dim)
    optimizer = torch.optim.Adam(actor.parameters(), lr=3e-4, eps=1e-5)
    critic_optimizer = torch.optim.Adam(list(critic.parameters()) + list(cost_critic.parameters()), lr=1e-3)
    return lambda batch, margin, args, **kw: cppo.cppo_update(
        actor, critic, cost_critic, optimizer, critic_optimizer, batch, margin, False, args, **kw
    )[0]


@pytest.mark.parametrize("max_step_scale", [0.0, 10.0])
def test_kl_scaled_m_step_reaches_the_kl_budget(max_step_scale):
    actor, batch = synthetic_batch()
    stats = updater(actor)(batch, 1.0, cppo.Args(max_step_scale=max_step_scale, num_minibatches=8))
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
@pytest.mark.parametrize("trigger", ["cost", "infeasible"])
def test_recovery_switch_lasts_until_the_lower_switch_cost(tmp_path, monkeypatch, trigger):
    # A limit of 2 on PointGoal1, a random policy and a window of 2 episodes: J_c moves around the limit. Recovery
    # must start when the trigger says (J_c > d, or an E-step with nothing feasible) and then last while J_c stays
    # at or above the lower switch cost (0.5 d here); no recovery while J_c is below it.
    monkeypatch.chdir(tmp_path)
    args = cppo.Args(
        num_envs=2,
        num_steps=500,
        total_timesteps=8000,
        eval_episodes=0,
        cost_limit=2.0,
        seed=2,
        cost_window=2,
        recovery_exit_frac=0.5,
        recovery_trigger=trigger,
    )
    cppo.main(args)
    rows = read_progress(only_run_dir(tmp_path))
    recovering = False
    for row in rows:
        cost = float(row["cost_estimate"]) if int(row["cost_estimate_episodes"]) else 0.0
        recovery = float(row["cppo/recovery"]) == 1.0
        if cost < 1.0:
            recovering = False
        elif trigger == "cost" and cost > 2.0:
            recovering = True
        assert recovery == (recovering or float(row["cppo/kappa"]) < -1), row
        recovering = recovering or recovery
    assert any(float(r["cppo/recovery"]) == 1.0 for r in rows)


@pytest.mark.parametrize("trigger", ["cost", "infeasible"])
def test_recovery_switch_by_hand(trigger):
    # d = 20, lower switch cost 0.5 d = 10. Below 10 recovery always ends; above d it starts only with the cost
    # trigger; in between (and at the switch costs themselves) the state stays what it was.
    args = cppo.Args(recovery_exit_frac=0.5, recovery_trigger=trigger)
    switch = lambda state, cost: cppo.recovery_switch(state, cost, 20.0, args)
    assert switch(True, 9.9) is False and switch(False, 9.9) is False
    for cost in (10.0, 15.0, 20.0):
        assert switch(True, cost) is True and switch(False, cost) is False
    assert switch(True, 20.1) is True
    assert switch(False, 20.1) is (trigger == "cost")
