"""ppo_lagrangian.py kernels: the cost window and the multiplier updates on numbers with a known direction."""

import math

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from conftest import load_script, only_run_dir, read_progress

lag = load_script("ppo_lagrangian")


def textbook(ki: float = 0.035, cost_limit: float = 25.0, init: float = 0.001):
    """The textbook projected gradient ascent lambda <- (lambda + ki (J_c - d))+: the PID's I term alone, unclipped."""
    return lag.PIDLagrangeMultiplier(cost_limit, init, kp=0.0, ki=ki, kd=0.0, error_bound=math.inf)


@pytest.mark.parametrize(
    "make",
    [
        textbook,
        lambda: lag.PIDLagrangeMultiplier(cost_limit=25.0, init=0.001, kp=0.1, ki=0.01, kd=0.01),
    ],
)
def test_multiplier_rises_above_the_limit_and_falls_to_zero_below(make):
    multiplier = make()
    values = [multiplier.update(60.0) for _ in range(30)]  # cost well above d = 25
    assert all(b > a for a, b in zip(values, values[1:])), values
    assert values[-1] > 0.5
    values = [multiplier.update(5.0) for _ in range(300)]  # cost well below d
    assert min(values) >= 0.0
    assert values[-1] == 0.0


def test_textbook_ascent_steps_ki_times_the_violation():
    up = textbook(init=1.0)
    assert up.update(30.0) == pytest.approx(1.0 + 0.035 * 5)
    assert up.update(30.0) == pytest.approx(1.0 + 0.035 * 10)  # no momentum, no derivative: the same step again
    assert textbook(init=1.0).update(20.0) == pytest.approx(1.0 - 0.035 * 5)
    at_zero = textbook(init=0.0)
    assert at_zero.update(0.0) == 0.0  # projected, never negative
    assert at_zero.update(26.0) == pytest.approx(0.035)  # and nothing wound up below 0


def test_pid_multiplier_known_numbers():
    """The paper's PID (error unclipped): lambda = (P + I + D)+ on e = J_c - d."""
    pid = lag.PIDLagrangeMultiplier(cost_limit=10.0, init=0.0, kp=0.1, ki=0.01, kd=0.5, error_bound=math.inf)
    # error 10: I = 0.1, P = 1.0, no derivative on the first call
    assert pid.update(20.0) == pytest.approx(1.1)
    assert (pid.p, pid.integral, pid.d) == pytest.approx((1.0, 0.1, 0.0))
    # error 20: I = 0.3, P = 2.0, D = 0.5 * (20 - 10)
    assert pid.update(30.0) == pytest.approx(0.3 + 2.0 + 5.0)
    # error 0: I stays 0.3, P = 0, the error fell so D = 0
    assert pid.update(10.0) == pytest.approx(0.3)


def test_pid_error_is_clipped_to_the_limit_by_default():
    pid = lag.PIDLagrangeMultiplier(cost_limit=10.0, init=0.0, kp=0.1, ki=0.01, kd=0.5)
    assert pid.update(30.0) == pytest.approx(0.1 + 1.0)  # error 20 counts as 10: I = 0.1, P = 1.0
    assert pid.update(50.0) == pytest.approx(0.2 + 1.0)  # error 40 counts as 10 too: D = 0.5 * (10 - 10) = 0
    assert (pid.p, pid.integral, pid.d) == pytest.approx((1.0, 0.2, 0.0))
    assert pid.update(0.0) == pytest.approx(0.0)  # error -10: I = 0.1, P = -1.0, lambda clamped at 0
    assert pid.integral == pytest.approx(0.1)
    assert lag.PIDLagrangeMultiplier(cost_limit=0.0, init=0.0, kp=0.1, ki=0.01, kd=0.0).error_bound == 1.0


@pytest.mark.parametrize("bound, let_go", [(None, 41), (math.inf, 141)])
def test_pid_lets_go_after_a_long_violation(bound, let_go):
    """50 updates at 4x the limit, then cost 0. With the default gains and d = 25: clipped, the error is +25 and then
    -25, so I climbs 0.25 a step to 12.501 and falls as fast; lambda = I - 2.5 (P = -2.5) is 0 from the 41st update
    under the limit on. Unclipped, the error +75 winds I up to 37.501, and lambda takes 141 updates to reach 0."""
    pid = lag.PIDLagrangeMultiplier(cost_limit=25.0, init=0.001, kp=0.1, ki=0.01, kd=0.01, error_bound=bound)
    for _ in range(50):
        pid.update(100.0)
    below = [pid.update(0.0) for _ in range(200)]
    first_zero = below.index(0.0) + 1
    assert first_zero == let_go, below[let_go - 3 : let_go + 1]
    assert all(v == 0.0 for v in below[first_zero - 1 :])


def test_pid_stays_bounded_when_the_cost_oscillates_around_the_limit():
    """Costs alternating d + 20 and d - 20 for 1000 updates: I goes up 0.2 and back, so lambda never exceeds
    init + ki * 20 + kp * 20 + kd * 40 = 0.001 + 0.2 + 2.0 + 0.4, and falls to 0 at every low step."""
    pid = lag.PIDLagrangeMultiplier(cost_limit=25.0, init=0.001, kp=0.1, ki=0.01, kd=0.01)
    values = [pid.update(45.0 if i % 2 == 0 else 5.0) for i in range(1000)]
    assert max(values) == pytest.approx(0.001 + 0.2 + 2.0 + 0.4)
    assert max(values[:1]) == pytest.approx(0.001 + 0.2 + 2.0)  # no derivative on the first update
    assert values[1::2] == [0.0] * 500
    assert pid.integral == pytest.approx(0.001)


def test_cost_window_is_the_mean_of_the_last_episodes():
    window = lag.CostWindow(4)
    assert math.isnan(window.mean)  # no episode has finished yet
    assert window.add([10.0, 20.0]) == pytest.approx(15.0)
    assert window.add([30.0, 40.0, 50.0]) == pytest.approx(35.0)  # 10 has left the window: (20 + 30 + 40 + 50) / 4
    assert window.add([]) == pytest.approx(35.0)  # a rollout where no episode ended keeps the estimate


RULES = {
    "textbook": textbook,
    "textbook, fast": lambda: textbook(ki=0.2),
    "pid": lambda: lag.PIDLagrangeMultiplier(cost_limit=25.0, init=0.001, kp=0.1, ki=0.01, kd=0.01),
}


@pytest.mark.parametrize("rule", RULES)
def test_multiplier_follows_the_windowed_cost(rule):
    """Rollouts of 8 episodes into a 32-episode window, as in main(): lambda rises while the window's cost is above
    the limit and, once the window holds only episodes under it, falls to 0 and stays there (never below).
    The textbook rule (I alone) goes on rising while the window is still above the limit (its first 2 rollouts)."""
    multiplier, window = RULES[rule](), lag.CostWindow(32)
    above = [multiplier.update(window.add([40.0, 80.0] * 4)) for _ in range(20)]  # 60 per episode, d = 25
    assert all(b > a for a, b in zip(above, above[1:])), above
    assert above[-1] > 0.5
    below = [multiplier.update(window.add([0.0, 10.0] * 4)) for _ in range(200)]  # 5 per episode
    assert window.mean == pytest.approx(5.0)
    peak = int(np.argmax(below))
    assert peak == (0 if rule == "pid" else 1), below[:30]
    settled = below[max(peak, 4) :]  # from the 4th rollout on, the window holds only the new episodes
    assert all(b <= a for a, b in zip(settled, settled[1:])), settled
    assert min(below) >= 0.0 and below[-1] == 0.0


def tiny_halfcheetah_rows(tmp_path, monkeypatch, **args) -> list:
    """main() on rollouts of 2 envs x 500 steps for 3000 steps: HalfCheetahVelocity episodes last 1000 steps, so the
    first 2 end in the second rollout and none in the third. Returns the progress rows."""
    monkeypatch.chdir(tmp_path)
    lag.main(
        lag.Args(
            env_id="SafetyHalfCheetahVelocity-v1",
            num_envs=2,
            num_steps=500,
            total_timesteps=3000,
            eval_episodes=0,
            **args,
        )
    )
    return read_progress(only_run_dir(tmp_path))


@pytest.mark.slow
def test_textbook_rule_runs_and_follows_the_window(tmp_path, monkeypatch):
    """The textbook rule through main(): rollouts of 2 envs x 500 steps; HalfCheetahVelocity episodes last 1000 steps,
    so the first 2 end in the second rollout. lambda waits (0.001) until then; their cost is far below d, so one step
    takes lambda to the clamp at 0, and no new episode leaves it there."""
    textbook_gains = dict(pid_kp=0.0, pid_ki=0.035, pid_kd=0.0, pid_setpoint=1.0, pid_error_bound=math.inf)
    rows = tiny_halfcheetah_rows(tmp_path, monkeypatch, cost_limit=1e6, **textbook_gains)
    assert [int(r["cost_estimate_episodes"]) for r in rows] == [0, 2, 2]
    assert [float(r["lagrange_multiplier"]) for r in rows] == pytest.approx([0.001, 0.0, 0.0])


@pytest.mark.slow
def test_pid_terms_are_logged_and_make_lambda(tmp_path, monkeypatch):
    """The default multiplier through main(), as in the textbook test above: the first row logs the initial I and
    lambda; at each rollout where episodes end (every second one: 1000-step episodes, 500-step rollouts), P, I and D
    follow the window's cost against the set point (the default 0.8 of d = 10: 8, the error clipped to +-8), and
    lambda = (P + I + D)+ on every row."""
    rows = tiny_halfcheetah_rows(tmp_path, monkeypatch, cost_limit=10.0, lagrangian_multiplier_init=0.5)
    rows = [{k: float(v) for k, v in r.items()} for r in rows]
    assert (rows[0]["pid_p"], rows[0]["pid_i"], rows[0]["lagrange_multiplier"]) == (0.0, 0.5, 0.5)
    assert [int(r["cost_estimate_episodes"]) for r in rows] == [0, 2, 2]
    integral = 0.5
    for row, ended in zip(rows[1:], (True, False)):
        error = min(max(row["cost_estimate"] - 8.0, -8.0), 8.0)
        integral = max(0.0, integral + 0.01 * error) if ended else integral
        assert (row["pid_p"], row["pid_i"]) == pytest.approx((0.1 * error, integral))
        assert row["lagrange_multiplier"] == pytest.approx(max(0.0, row["pid_p"] + row["pid_i"] + row["pid_d"]))


class CountingEnv(gymnasium.Env):
    """Step t (from 1 after a reset) pays reward t and cost 10 t and observes t; the episode terminates at `end`.
    Records the actions it is given."""

    observation_space = spaces.Box(-np.inf, np.inf, (1,))
    action_space = spaces.Box(-1.0, 1.0, (1,))

    def __init__(self, end: int):
        self.t, self.end, self.actions = 0, end, []

    def reset(self, seed=None, options=None):
        self.t = 0
        return np.zeros(1), {}

    def step(self, action):
        self.t += 1
        self.actions.append(float(action[0]))
        return np.array([float(self.t)]), float(self.t), 10.0 * self.t, self.t == self.end, False, {}


def test_action_repeat_holds_the_action_and_sums_reward_and_cost_until_the_episode_ends():
    env = lag.ActionRepeat(CountingEnv(end=6), 4)
    env.reset()
    obs, reward, cost, terminated, _, _ = env.step(np.array([0.5]))
    assert (obs[0], reward, cost, terminated) == (4.0, 1 + 2 + 3 + 4, 10 + 20 + 30 + 40, False)
    obs, reward, cost, terminated, _, _ = env.step(np.array([-0.5]))
    assert (obs[0], reward, cost, terminated) == (6.0, 5 + 6, 50 + 60, True)  # stops at the end: 2 steps, not 4
    assert env.unwrapped.actions == [0.5] * 4 + [-0.5] * 2


def test_action_repeat_defaults_follow_the_task_and_keep_a_rollout_of_8000_env_steps():
    layout = lambda **kw: lag.env_layout(lag.repeat_layout(lag.Args(**kw)))
    nav, vel = layout(env_id="SafetyPointGoal1-v0"), layout(env_id="SafetyHalfCheetahVelocity-v1")
    assert (nav.action_repeat, nav.num_envs, nav.num_steps) == (4, 2, 1000)
    assert (vel.action_repeat, vel.num_envs, vel.num_steps) == (1, 8, 1000)
    assert layout(action_repeat=2).num_steps == 2000 and layout(action_repeat=2, num_steps=7).num_steps == 7


def test_evaluation_holds_each_action_as_in_training_and_the_checkpoint_carries_it(tmp_path, monkeypatch):
    actor, obs_rms = lag.Actor(1, 1), lag.RunningMeanStd(1)
    assert int(actor.action_repeat) == 1  # a fresh actor acts every step
    actor.action_repeat.fill_(4)
    path = str(tmp_path / "model.pt")
    lag.save_checkpoint(path, actor, obs_rms, lag.Args())
    actor, obs_rms = lag.load_checkpoint(path)
    env = CountingEnv(end=8)
    monkeypatch.setattr(lag.safety_gymnasium, "make", lambda env_id, render_mode=None: env)
    returns, costs = lag.evaluate(actor, obs_rms, "counting", 1, seed=0, stochastic=True)
    assert (returns[0], costs[0]) == (36.0, 360.0)  # 1 + ... + 8: the episode runs to its end
    first, second = env.actions[:4], env.actions[4:]
    assert len(env.actions) == 8 and len(set(first)) == 1 and len(set(second)) == 1 and first[0] != second[0]
