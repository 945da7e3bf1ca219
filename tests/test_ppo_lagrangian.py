"""ppo_lagrangian.py kernels: the multiplier update on numbers with a known direction."""
import pytest

from helpers import load_script

lag = load_script("ppo_lagrangian")


@pytest.mark.parametrize("make", [
    lambda: lag.LagrangeMultiplier(cost_limit=25.0, init=0.001, lr=0.035),
    lambda: lag.PIDLagrangeMultiplier(cost_limit=25.0, init=0.001, kp=0.1, ki=0.01, kd=0.01),
])
def test_multiplier_rises_above_the_limit_and_falls_to_zero_below(make):
    multiplier = make()
    values = [multiplier.update(60.0) for _ in range(30)]  # cost well above d = 25
    assert all(b > a for a, b in zip(values, values[1:])), values
    assert values[-1] > 0.5
    values = [multiplier.update(5.0) for _ in range(300)]  # cost well below d
    assert min(values) >= 0.0
    assert values[-1] == 0.0


def test_adam_multiplier_first_step_is_lr_in_the_direction_of_the_violation():
    up = lag.LagrangeMultiplier(cost_limit=25.0, init=1.0, lr=0.035)
    assert up.update(30.0) == pytest.approx(1.035, abs=1e-6)  # Adam's first step has size lr
    down = lag.LagrangeMultiplier(cost_limit=25.0, init=1.0, lr=0.035)
    assert down.update(20.0) == pytest.approx(0.965, abs=1e-6)
    at_zero = lag.LagrangeMultiplier(cost_limit=25.0, init=0.0, lr=0.035)
    assert at_zero.update(0.0) == 0.0  # clamped, never negative


def test_pid_multiplier_known_numbers():
    pid = lag.PIDLagrangeMultiplier(cost_limit=10.0, init=0.0, kp=0.1, ki=0.01, kd=0.5)
    # error 10: I = 0.1, P = 1.0, no derivative on the first call
    assert pid.update(20.0) == pytest.approx(1.1)
    # error 20: I = 0.3, P = 2.0, D = 0.5 * (30 - 20)
    assert pid.update(30.0) == pytest.approx(0.3 + 2.0 + 5.0)
    # error 0: I stays 0.3, P = 0, cost fell so D = 0
    assert pid.update(10.0) == pytest.approx(0.3)
