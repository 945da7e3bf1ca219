"""Dyna-CPPO: CPPO with a multi-step dynamics model and imagined rollouts, on Safety-Gymnasium, in one file.

Algorithm 1 of a course project report (CS-8803-DRL, "Constrained Proximal Policy Optimization", section 2),
restated here: CPPO (Xuan et al. 2023, arXiv:2305.14216) with Dyna (Sutton 1991). Each iteration:
1. collect a real rollout and run the CPPO update on it (E-step target ratios, M-step fit; see cppo.py);
2. store the real transitions, with their episode boundaries, in a replay buffer D_real;
3. train a dynamics model F(s, a) -> (s' - s, r) and a cost model with the report's multi-step loss (its Eq. 5),
   sum_k E || F(s_t, a_{t:t+k-1}) - s_{t+k} ||, F rolling on its own predictions over real windows of one episode;
4. from states of the latest real rollout, roll the current policy through F for H steps (all starts at once)
   and run the same CPPO update on these imagined trajectories: truncated at H with bootstrap V(s_H), GAE per
   trajectory, and lambda from real episodes only.
The CPPO update (cppo_update) and its task defaults are cppo.py's line for line, with its departures;
--model-rollouts 0 is exactly cppo.py (the model has its own random generator). Departures from Algorithm 1
(measured in docs/dyna_cppo.md):
- the reward head learns in units of the real rewards' spread, on targets clipped to their 1-99% quantiles;
- the cost model is a classifier C(s, a) -> P(cost > 0), max-pooled per sensor, on real and model states;
- --model-steps 40: a fixed number of model minibatches per iteration, not epochs over the growing D_real;
- --imagination-min-skill 0: imagine only while the model (state, reward and cost) beats its no-model baselines;
- --imagined-kl-frac 0.5: the imagined update regresses toward v within 0.5 delta, its step not scaled (1: Alg. 1);
- --imagined-critics off: the critics learn from real returns only (on: also from imagined ones, Algorithm 1).
- --action-repeat 8 on navigation tasks, as cppo.py: the model predicts a decision's held step, an imagined cost
  is P(cost > 0) times the mean positive cost in D_real, and --horizon counts decisions.

Usage: python dyna_cppo.py --env-id SafetyPointGoal1-v0 --horizon 5 --save-model
       python dyna_cppo.py --eval-checkpoint runs/<run>/dyna_cppo.pt   # evaluate a saved policy, both modes
"""

import csv
import dataclasses
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering for --capture-video; set before MuJoCo loads

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (Adam loads it anyway; loading it after MuJoCo's EGL segfaults, so load it first)
import torch.nn as nn
import torch.nn.functional as F

# isort: split
# (MuJoCo, loaded by safety_gymnasium, must come after torch._dynamo)
import gymnasium
import safety_gymnasium
import tyro
from gymnasium import spaces
from safety_gymnasium.utils.registration import safe_registry


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run folder's name)"""
    seed: int = 1
    """seed of the experiment (torch, numpy, random and the environments)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = False
    """if toggled, use CUDA when available (small MLPs are usually faster on the CPU)"""
    track: bool = False
    """if toggled, log to Weights and Biases (offline when there is no API key or WANDB_MODE=offline)"""
    wandb_project_name: str = "safe-rl-singlefile"
    """the W&B project name"""
    wandb_entity: Optional[str] = None
    """the W&B entity (team)"""
    capture_video: bool = False
    """if toggled, record the first episode of each evaluation mode to `runs/{run_name}/videos/`"""

    env_id: str = "SafetyPointGoal1-v0"
    """the Safety-Gymnasium environment id"""
    total_timesteps: int = 1_000_000
    """total environment steps of the experiment"""
    num_envs: Optional[int] = None
    """the number of parallel environments (None: 2 for navigation tasks, 8 for velocity tasks; see `env_layout`)"""
    vector_env: Literal["auto", "sync", "async"] = "auto"
    """how to run the environments: `auto` is async (subprocesses) for navigation tasks, sync for velocity tasks"""
    cost_limit: float = 25.0
    """the episodic cost limit d: the constraint is mean episodic cost <= d"""
    save_model: bool = False
    """if toggled, save the policy and the observation-normalisation statistics to the run folder"""
    eval_episodes: int = 10
    """episodes of each final evaluation, stochastic and deterministic (0 skips it)"""
    eval_checkpoint: Optional[str] = None
    """evaluate this `--save-model` checkpoint on the env it was trained on (both modes, --eval-episodes each,
    seeds from --seed as at the end of training) and exit: nothing is trained"""

    num_steps: Optional[int] = None
    """decisions per environment per rollout (None: 8000 // (num_envs * action_repeat), 8 episodes of 1000 steps)"""
    learning_rate: float = 3e-4
    """the Adam learning rate of the policy (M-step)"""
    critic_learning_rate: float = 3e-4
    """the Adam learning rate of the reward and cost critics"""
    anneal_lr: bool = True
    """if toggled, decay the policy's and the critics' learning rates linearly to 0 over training"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.95
    """the GAE lambda (PPO-Lagrangian's; the CPPO paper's is 0.97)"""
    cost_gamma: float = 0.99
    """the discount factor of the cost critic"""
    cost_gae_lambda: float = 0.95
    """the GAE lambda of the cost advantages"""
    max_kl: float = 0.02
    """delta, the trust region in mean KL(pi_old || pi_new): the E-step's radius R, the M-step's step (and stop)"""
    m_step: Literal["clip", "regress"] = "clip"
    """clip: PPO's clipped surrogate on v - 1; regress: the paper's regression of pi_theta / pi_old toward v"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient of --m-step clip"""
    max_step_scale: Optional[float] = None
    """the fitted parameter step is scaled (up to this factor) until the mean KL reaches delta; 0: not scaled
    (None: 0 on navigation tasks, 10 on velocity tasks)"""
    cost_window: int = 32
    """J_c, which lambda follows: the mean cost of the last `cost_window` finished episodes"""
    pid_kp: float = 0.1
    """proportional gain of lambda, the E-step's weight on cost"""
    pid_ki: float = 0.01
    """integral gain of lambda"""
    pid_kd: float = 0.01
    """derivative gain of lambda"""
    pid_setpoint: float = 0.8
    """the PID steers J_c to this fraction of d (a learning policy's cost drifts up: aimed at d, it settles above)"""

    horizon: int = 5
    """H: steps of each imagined rollout"""
    model_rollouts: int = 1600
    """imagined rollouts (starts) per iteration; 0 turns imagination off and reduces to CPPO"""
    model_start_iter: int = 5
    """iterations of real data (and model training) before imagination starts"""
    imagination_min_skill: float = 0.0
    """imagine only while the model's lowest skill (state, reward, and cost where the rollout has one; each against its
    no-model baseline, on the latest rollout before training on it) exceeds this; -inf always, as Algorithm 1 does"""
    imagined_kl_frac: float = 0.5
    """the imagined update's trust region as a fraction of --max-kl (the real update may spend all of it; 1: Alg. 1)"""
    imagined_critics: bool = False
    """if toggled, the imagined update also fits both critics to model-made returns (Algorithm 1); default: real only"""
    multi_step_k: int = 5
    """K: the model is trained on its own k-step predictions, k = 1..K"""
    model_steps: int = 40
    """minibatch steps of the model and its cost classifier per iteration, on windows drawn from D_real"""
    model_lr: float = 1e-3
    """the Adam learning rate of the dynamics model and its cost classifier"""
    model_hidden: int = 200
    """hidden units of the model's two layers"""
    model_batch_size: int = 1000
    """windows per model minibatch"""
    buffer_rollouts: int = 10
    """D_real keeps the last this many real rollouts"""
    num_minibatches: Optional[int] = None
    """minibatches per epoch (None: 16 on navigation tasks, 32 on velocity tasks; ~62 and 250 decisions each)"""
    update_epochs: int = 10
    """the number of passes over each rollout"""
    max_grad_norm: float = 0.5
    """the maximum norm of the gradient"""
    action_repeat: Optional[int] = None
    """each action is held for this many env steps, rewards and costs summed; the discounts and GAE lambdas above
    are per env step (None: 8 on navigation tasks, 1 on velocity tasks)"""


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class MLP(nn.Module):
    """in -> 64 -> 64 -> out with tanh, orthogonal init. forward() calls F.linear on the layers' weights:
    nn.Module's call overhead (~10 us a layer on a CPU) would otherwise be most of the per-step cost."""

    def __init__(self, in_dim: int, out_dim: int, out_std: float, hidden: int = 64):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                layer_init(nn.Linear(in_dim, hidden)),
                layer_init(nn.Linear(hidden, hidden)),
                layer_init(nn.Linear(hidden, out_dim), std=out_std),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers  # unpacked, not sliced: a slice of a ModuleList builds a new module
        for layer in hidden:
            x = torch.tanh(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, last.weight, last.bias)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std))^2), summed over action dimensions."""
    return (-0.5 * ((x - mean) / log_std.exp()).pow(2) - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)


class Actor(nn.Module):
    """Gaussian policy: an MLP gives the mean, a state-independent parameter gives log std."""

    def __init__(self, obs_dim: int, act_dim: int, init_log_std: float = -0.5):
        super().__init__()
        self.mean = MLP(obs_dim, act_dim, out_std=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), init_log_std))
        self.register_buffer("action_repeat", torch.tensor(1))  # env steps per action: checkpoints and `evaluate`

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(action, self.mean(obs), self.log_std)


class Critic(nn.Module):
    def __init__(self, obs_dim: int):
        super().__init__()
        self.v = MLP(obs_dim, 1, out_std=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v(obs).squeeze(-1)


def compute_gae(rewards, values, next_values, dones, gamma: float, lam: float):
    """Generalised advantage estimation over a [T, N] rollout.

    `next_values[t]` is the value of the state that followed step t in the same episode: V(s_{t+1}) while
    the episode goes on, V(final observation) if it was truncated at t, 0 if it terminated at t.
    `dones[t]` is 1 where an episode ended at t (either way), so no advantage leaks across episodes.
    Returns (advantages, returns), returns = advantages + values (the critic's regression target).
    """
    delta, coef = (rewards + gamma * next_values - values).cpu().numpy(), (gamma * lam * (1.0 - dones)).cpu().numpy()
    advantages, last = np.zeros_like(delta), np.zeros_like(delta[0])
    for t in reversed(range(len(delta))):  # in numpy: the same numbers as torch's small ops, in far less time
        last = delta[t] + coef[t] * last
        advantages[t] = last
    advantages = torch.from_numpy(advantages).to(rewards.device)
    return advantages, advantages + values


MIN_TARGET_RATIO = 0.01  # the E-step keeps v >= this: the paper's v_bar > -1, held a little inside
RATIO_FLOOR = 0.6  # rho_min of --m-step regress (the paper's): a ratio below it is not pushed further down


def plane_solution(adv, cost_adv, radius: float, budget: float):
    """max x . adv  s.t.  x . cost_adv <= budget,  ||x|| <= radius, for centred adv and cost_adv.

    The optimum lies in the plane of u_c = cost_adv / ||cost_adv|| and u = the part of adv orthogonal to u_c,
    normalised: x = radius * (cos(theta) u_c + sin(theta) u). theta_A is the angle of adv in that plane and
    kappa = budget / (radius ||cost_adv||) the cosine of the constraint boundary:
    - cos(theta_A) <= kappa: the unconstrained optimum adv / ||adv|| is feasible, theta = theta_A;
    - kappa < cos(theta_A): the feasible point nearest theta_A, theta = arccos(kappa) (pi for kappa < -1: nothing
      on the sphere is feasible, so the most cost-lowering point).
    Returns (x, theta, kappa)."""
    tiny = 1e-12
    cost_norm, adv_norm = cost_adv.norm().item(), adv.norm().item()
    if cost_norm <= tiny * max(1.0, adv_norm):  # no cost signal: a plain reward step (or none)
        x = radius * adv / adv_norm if adv_norm > tiny else torch.zeros_like(adv)
        return x, 0.0, math.inf
    u_c = cost_adv / cost_norm
    a_c = (adv @ u_c).item()
    perp = adv - a_c * u_c
    a_r = perp.norm().item()
    u = perp / a_r if a_r > 1e-9 * max(1.0, adv_norm) else torch.zeros_like(adv)  # adv parallel to cost_adv
    theta_a = math.atan2(a_r, a_c) if adv_norm > tiny else math.pi  # no reward signal: only cost matters
    kappa = budget / (radius * cost_norm) if radius > 0 else (math.inf if budget >= 0 else -math.inf)
    theta = theta_a if math.cos(theta_a) <= kappa else math.acos(max(-1.0, kappa))  # pi if nothing is feasible
    if adv_norm <= tiny and kappa >= -1:  # nothing to gain: the smallest step that satisfies the constraint
        return min(0.0, budget / cost_norm) * u_c, theta, kappa
    return radius * (math.cos(theta) * u_c + math.sin(theta) * u), theta, kappa


def solve_with_repair(adv, cost_adv, radius: float, budget: float):
    """plane_solution, then the paper's element-wise repair of v_bar > -1: clip the entries below MIN_TARGET_RATIO - 1
    and re-solve the free entries as mu + x, where mu keeps sum(v_bar) = 0 and the radius and cost budget left
    for x are what the clipped entries and mu have not used. Repeats until nothing new is clipped."""
    n = adv.shape[0]
    v_bar, theta, kappa = plane_solution(adv, cost_adv, radius, budget)
    low = MIN_TARGET_RATIO - 1.0
    clipped = torch.zeros(n, dtype=torch.bool)
    while True:
        newly = ~clipped & (v_bar < low)
        if not newly.any():
            break
        clipped |= newly
        free = ~clipped
        n_clip, n_free = int(clipped.sum()), int(free.sum())
        mu = -low * n_clip / n_free
        radius_free_sq = radius**2 - n_clip * low**2 - n_free * mu**2
        budget_free = budget - low * cost_adv[clipped].sum().item() - mu * cost_adv[free].sum().item()
        a_free, c_free = adv[free] - adv[free].mean(), cost_adv[free] - cost_adv[free].mean()
        x = torch.zeros(n_free, dtype=adv.dtype)
        if radius_free_sq > 0:  # (if the free entries alone cannot meet the budget: the most cost-lowering x)
            x, *_ = plane_solution(a_free, c_free, math.sqrt(radius_free_sq), budget_free)
        v_bar = torch.full_like(adv, low)
        v_bar[free] = mu + x
    return v_bar, theta, kappa, clipped.double().mean().item()


def solve_target_ratio(adv, cost_adv, cost_weight: float, delta: float):
    """CPPO's E-step: the target ratio v = 1 + v_bar for N samples (1-D tensors adv, cost_adv of length N), and
    what the solver did (a dict: theta, kappa, clipped_fraction). v_bar maximises v_bar . A subject to
    sum(v_bar) = 0, ||v_bar|| <= R with R^2 = N delta / (2 ln 2 - 1), v_bar . A_c <= b, and v > 0 element-wise.
    b = kappa R ||A_c|| puts the constraint's boundary at the angle of A/|A| - lambda A_c/|A_c| (lambda =
    cost_weight): kappa = (c - lambda) / sqrt((c - lambda)^2 + 1 - c^2), c = cos(theta_A). lambda = 0 gives the
    reward step, lambda -> inf the step along -A_c."""
    adv, cost_adv = adv.detach().cpu().double(), cost_adv.detach().cpu().double()  # solved on the CPU
    adv, cost_adv = adv - adv.mean(), cost_adv - cost_adv.mean()
    radius = math.sqrt(adv.shape[0] * delta / (2 * math.log(2) - 1))
    cost_norm = cost_adv.norm().item()
    c = (adv @ cost_adv).item() / max(adv.norm().item() * cost_norm, 1e-12)
    kappa = (c - cost_weight) / math.sqrt((c - cost_weight) ** 2 + max(0.0, 1 - c * c) + 1e-12)
    budget = max(-1.0, min(1.0, kappa)) * radius * cost_norm
    v_bar, theta, kappa, clipped = solve_with_repair(adv, cost_adv, radius, budget)
    cost = (v_bar @ cost_adv).item()
    if kappa >= -1 and cost > budget:
        # The repair (v > 0) used up the cost room. Blend toward the most cost-lowering point with v > 0;
        # every constraint but the cost one is convex, so the blend keeps them and meets the budget if it can.
        v_low, *_ = solve_with_repair(adv, cost_adv, radius, -math.inf)
        low_cost = (v_low @ cost_adv).item()
        t = min(1.0, (cost - budget) / (cost - low_cost)) if cost > low_cost else 0.0
        v_bar = (1 - t) * v_bar + t * v_low
    return 1.0 + v_bar, {"theta": theta, "kappa": kappa, "clipped_fraction": clipped}


def m_step_loss(ratio, v, args: "Args"):
    """The M-step's loss. clip: PPO's clipped surrogate with v - 1, normalised over the minibatch, as the advantage.
    regress: -E[min(w r, w max(r, RATIO_FLOOR))] with w = stop_grad(v - r), whose gradient is that of E[(v - r)^2] / 2:
    r moves toward v, except that a ratio already below the floor is not pushed further down."""
    if args.m_step == "clip":
        a = v - 1.0
        a = (a - a.mean()) / (a.std() + 1e-8)
        return -torch.min(ratio * a, ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef) * a).mean()
    w = (v - ratio).detach()
    return -torch.min(w * ratio, w * ratio.clamp(min=RATIO_FLOOR)).mean()


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q) -> torch.Tensor:
    """KL(p || q) between diagonal Gaussians, summed over action dimensions (one value per state)."""
    var_p, var_q = (2 * log_std_p).exp(), (2 * log_std_q).exp()
    return (log_std_q - log_std_p + (var_p + (mean_p - mean_q).pow(2)) / (2 * var_q) - 0.5).sum(-1)


def scale_step_to_kl(actor, old_params, obs, old_mean, old_log_std, delta: float, max_scale: float, iters: int = 12):
    """Make the M-step's KL constraint active (the paper's Eq. 9): theta = theta_old + s (theta_fit - theta_old),
    with s in [0, max_scale] found by bisection where the exact mean KL(pi_old || pi_theta) on the batch crosses
    delta (max_scale if it stays below; 0 if the KL is not finite). Leaves the actor there; returns (s, its KL)."""
    params = list(actor.parameters())
    steps = [p.detach() - p_old for p, p_old in zip(params, old_params)]

    def kl_at(scale: float) -> float:
        with torch.no_grad():
            for p, p_old, step in zip(params, old_params, steps):
                p.copy_(p_old + scale * step)
            return gaussian_kl(old_mean, old_log_std, actor.mean(obs), actor.log_std).mean().item()

    kl_max = kl_at(max_scale)
    if kl_max <= delta:
        return max_scale, kl_max
    lo, hi, lo_kl = 0.0, max_scale, 0.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        kl = kl_at(mid)
        if kl <= delta:
            lo, lo_kl = mid, kl
        else:
            hi = mid
    kl_at(lo)
    return lo, lo_kl


class CostWindow:
    """The measured J_c: the mean episodic cost of the last `size` finished episodes (NaN before any)."""

    def __init__(self, size: int):
        self.costs = deque(maxlen=size)

    def add(self, episode_costs) -> float:
        self.costs.extend(float(c) for c in episode_costs)
        return self.mean

    @property
    def mean(self) -> float:
        return float(np.mean(self.costs)) if self.costs else float("nan")


def cppo_update(
    actor,
    critic,
    cost_critic,
    optimizer,
    critic_optimizer,
    batch: dict,
    cost_weight: float,
    args: "Args",
    scale_step: bool = True,
    train_critics: bool = True,
) -> dict:
    """One CPPO update (E-step with lambda = cost_weight, then M-step) on a flat batch: obs, act, logp (of pi_old),
    old_mean, adv, cost_adv, ret, cost_ret. `scale_step` scales the fitted step to the trust region, `train_critics`
    fits the critics to ret and cost_ret alongside (their losses are NaN without). Returns the update's log keys."""
    obs, act, logp, old_mean = batch["obs"], batch["act"], batch["logp"], batch["old_mean"]
    cost_adv = batch["cost_adv"] - batch["cost_adv"].mean()
    v, e_info = solve_target_ratio(batch["adv"], cost_adv, cost_weight, args.max_kl)
    v = v.float().to(obs.device)

    # M-step: clip for all epochs, or regress until mean KL > delta; the step is then scaled to delta.
    old_log_std = actor.log_std.detach().clone()
    old_params = [p.detach().clone() for p in actor.parameters()]
    critic_params = list(critic.parameters()) + list(cost_critic.parameters())
    policy_losses, critic_losses = [], []
    policy_epochs, fitting = 0, True
    for epoch in range(args.update_epochs):
        for idx in torch.randperm(len(obs), device=obs.device).split(max(1, len(obs) // args.num_minibatches)):
            if fitting:
                policy_loss = m_step_loss((actor.log_prob(obs[idx], act[idx]) - logp[idx]).exp(), v[idx], args)
                optimizer.zero_grad()
                policy_loss.backward()
                nn.utils.clip_grad_norm_(actor.parameters(), args.max_grad_norm, foreach=True)
                optimizer.step()
                policy_losses.append(policy_loss.detach())
            if train_critics:
                value_loss = 0.5 * (critic(obs[idx]) - batch["ret"][idx]).pow(2).mean()
                cost_value_loss = 0.5 * (cost_critic(obs[idx]) - batch["cost_ret"][idx]).pow(2).mean()
                critic_optimizer.zero_grad()
                (value_loss + cost_value_loss).backward()
                nn.utils.clip_grad_norm_(critic_params, args.max_grad_norm, foreach=True)
                critic_optimizer.step()
                critic_losses.append(torch.stack([value_loss.detach(), cost_value_loss.detach()]))
        if fitting:
            policy_epochs += 1
            with torch.no_grad():
                kl = gaussian_kl(old_mean, old_log_std, actor.mean(obs), actor.log_std).mean().item()
            fitting = kl <= args.max_kl or args.m_step == "clip"
    fit_kl, scale = kl, 1.0
    if scale_step and args.max_step_scale > 0:  # the KL constraint made active: scale the step to reach delta
        scale, kl = scale_step_to_kl(actor, old_params, obs, old_mean, old_log_std, args.max_kl, args.max_step_scale)
    value_loss, cost_value_loss = torch.stack(critic_losses).mean(0).tolist() if critic_losses else (math.nan,) * 2
    return {
        "cppo/theta": e_info["theta"],
        "cppo/kappa": e_info["kappa"],
        "cppo/clipped_fraction": e_info["clipped_fraction"],
        "cppo/m_step_epochs": policy_epochs,
        "cppo/fit_kl": fit_kl,
        "cppo/step_scale": scale,
        "kl": kl,
        "entropy": (0.5 + 0.5 * math.log(2 * math.pi) + actor.log_std.detach()).sum().item(),
        "policy_loss": torch.stack(policy_losses).mean().item(),
        "value_loss": value_loss,
        "cost_value_loss": cost_value_loss,
    }


def bootstrap_values(critic, cost_critic, final_obs: list, shape: tuple, device) -> torch.Tensor:
    """[2, T, M] values (reward, cost) of the final observations of episodes cut by the time limit, at their
    (t, env); 0 elsewhere, which is the value after a termination."""
    final_values = torch.zeros((2,) + shape, device=device)
    if final_obs:
        t_idx, env_idx, final_x = zip(*final_obs)
        final_x = torch.tensor(np.stack(final_x), dtype=torch.float32, device=device)
        with torch.no_grad():
            final_values[0, list(t_idx), list(env_idx)] = critic(final_x)
            final_values[1, list(t_idx), list(env_idx)] = cost_critic(final_x)
    return final_values


def advantages_batch(actor, critic, cost_critic, obs, act, rew, cost, done, final_values, args: "Args") -> dict:
    """Log-probs of pi_old, values and GAE (reward and cost) of a time-major [T, M] batch, flattened.
    obs has T + 1 rows (the last: the state after the batch); the next value is V(s_{t+1}) inside an
    episode, `final_values` (V(final obs), or 0 on termination) where `done`. Columns never mix: a
    column is one sequence of its own (e.g. one environment's)."""
    with torch.no_grad():
        old_mean = actor.mean(obs[:-1])
        logp = gaussian_log_prob(act, old_mean, actor.log_std)
        values, cost_values = critic(obs), cost_critic(obs)
        next_values = torch.where(done.bool(), final_values[0], values[1:])
        next_cost_values = torch.where(done.bool(), final_values[1], cost_values[1:])
    adv, ret = compute_gae(rew, values[:-1], next_values, done, args.gamma, args.gae_lambda)
    cost_adv, cost_ret = compute_gae(
        cost, cost_values[:-1], next_cost_values, done, args.cost_gamma, args.cost_gae_lambda
    )
    batch = dict(obs=obs[:-1], act=act, logp=logp, old_mean=old_mean, adv=adv, cost_adv=cost_adv, ret=ret)
    return {"cost_ret": cost_ret.flatten(0, 1), **{k: x.flatten(0, 1) for k, x in batch.items()}}


class DynamicsModel(nn.Module):
    """F(s, a) -> (s', r) on normalised observations: an MLP predicts the state delta. The reward head works in
    units of the real rewards' spread (reward_stats, set by fit_reward_scale): navigation rewards are ~0.02 per
    step, too small beside the state error for the head to learn them raw."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, generator: torch.Generator):
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # nn.Linear's default init would draw from the global stream
            sizes = (obs_dim + act_dim, hidden, hidden, obs_dim + 1)  # two SiLU layers
            layers = [nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:])]
            self.net = nn.Sequential(layers[0], nn.SiLU(), layers[1], nn.SiLU(), layers[2])
        for layer in self.net[::2]:  # its own generator: the policy's random stream stays that of cppo.py
            nn.init.orthogonal_(layer.weight, 1.0, generator=generator)
            nn.init.zeros_(layer.bias)
        # (low, high, shift, scale) of the reward targets; the identity until fit_reward_scale is called
        self.register_buffer("reward_stats", torch.tensor([-math.inf, math.inf, 0.0, 1.0]))

    def fit_reward_scale(self, rewards: np.ndarray, tail: float = 0.01) -> None:
        """Targets are clipped to the [tail, 1 - tail] quantiles of the real rewards (a goal reached is a rare
        +1 the state cannot foretell, and would dominate the squared error); shift and scale are their mean
        and standard deviation."""
        low, high = np.quantile(rewards, [tail, 1.0 - tail])
        clipped = np.clip(rewards, low, high)
        self.reward_stats.copy_(torch.tensor([low, high, clipped.mean(), clipped.std() + 1e-8]))

    def reward_target(self, rew: torch.Tensor) -> torch.Tensor:
        return rew.clamp(self.reward_stats[0], self.reward_stats[1])

    def forward(self, obs: torch.Tensor, act: torch.Tensor):
        out = self.net(torch.cat([obs, act], -1))
        return obs + out[..., :-1], self.reward_stats[2] + self.reward_stats[3] * out[..., -1]


class CostClassifier(nn.Module):
    """C(s, a) -> the logit of P(the step's cost > 0): cost is mostly a rare 0/1 event (a hazard entered), and
    an MLP on the whole state memorises the few visits instead of learning "a hazard is close". So each group
    of the observation (one sensor: a lidar's bins, an accelerometer's axes; `groups`, from the env) goes
    through an encoder shared by its elements, tanh(w x + b) with 8 features, and a max over the elements; an
    MLP reads the pooled features and the action. Without groups (velocity tasks) the MLP reads the whole state.
    A group's elements share one scale: fit_input_scale maps normalised inputs to raw units standardised per group."""

    def __init__(self, obs_dim: int, act_dim: int, groups: list, generator: torch.Generator, hidden: int = 64):
        super().__init__()
        self.groups = groups
        with torch.random.fork_rng(devices=[]):
            self.encoders = nn.ModuleList(nn.Linear(1, 8) for _ in groups)
            self.net = MLP((8 * len(groups) if groups else obs_dim) + act_dim, 1, 1.0, hidden)
        for layer in (m for m in self.modules() if isinstance(m, nn.Linear)):
            nn.init.orthogonal_(layer.weight, 1.0, generator=generator)
            nn.init.zeros_(layer.bias)
        self.register_buffer("input_stats", torch.tensor([[1.0] * obs_dim, [0.0] * obs_dim]))  # scale, shift

    def fit_input_scale(self, mean: np.ndarray, var: np.ndarray, eps: float = 1e-8) -> None:
        """From the observation normaliser's per-element statistics: x -> (x * std_i + mean_i - M) / S, with M and S
        the mean and spread of the group's raw values (its elements' pooled statistics)."""
        scale, shift = np.ones_like(mean), np.zeros_like(mean)
        for a, b in self.groups:
            m = mean[a:b].mean()
            spread = np.sqrt((var[a:b] + (mean[a:b] - m) ** 2).mean()) + eps
            scale[a:b], shift[a:b] = np.sqrt(var[a:b] + eps) / spread, (mean[a:b] - m) / spread
        self.input_stats.copy_(torch.tensor(np.stack([scale, shift])))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        if self.groups:
            obs = obs * self.input_stats[0] + self.input_stats[1]
            pooled = []
            for enc, (a, b) in zip(self.encoders, self.groups):  # max_x tanh(w x + b) = tanh(w max x + b) if w >= 0
                w, x = enc.weight[:, 0], obs[..., a:b]
                pooled.append(torch.tanh(torch.where(w >= 0, w * x.amax(-1, True), w * x.amin(-1, True)) + enc.bias))
            obs = torch.cat(pooled, -1)
        return self.net(torch.cat([obs, act], -1)).squeeze(-1)


def observation_groups(env_id: str) -> list:
    """(start, end) of each sensor's slice of the flat observation, in the order the env flattens them (its
    observation-space dict); [] for tasks without one (the velocity tasks)."""
    env = safety_gymnasium.make(env_id)
    sensors = getattr(env.unwrapped, "obs_space_dict", None)
    env.close()
    ends = np.cumsum([spaces.flatdim(space) for space in sensors.values()]) if sensors else []
    return [(int(end - spaces.flatdim(space)), int(end)) for end, space in zip(ends, (sensors or {}).values())]


def multi_step_loss(model: DynamicsModel, classifier: CostClassifier, obs, act, next_obs, rew, cost):
    """The report's Eq. 5 on real windows: obs [B, D] start states, act [B, K, A], next_obs [B, K, D],
    rew and cost [B, K]. The model rolls on its own predictions; the loss sums, over k = 1..K, step k's state
    error ||s_hat - s||_2, its reward MSE (in reward_scale units, on clipped targets) and the cost classifier's
    BCE at (s_hat, a) before the step: at real states (k = 1) and at the model's own (detached), as imagination
    meets them. Returns (loss, state error per k as a [K] tensor, detached)."""
    s_hat, states = obs, []
    loss, errors = 0.0, []
    for k in range(act.shape[1]):
        states.append(s_hat.detach())
        s_hat, r_hat = model(s_hat, act[:, k])
        error = (s_hat - next_obs[:, k]).norm(dim=-1)
        reward_error = ((r_hat - model.reward_target(rew[:, k])) / model.reward_stats[3]).pow(2).mean()
        loss = loss + error.mean() + reward_error
        errors.append(error.mean().detach())
    c_logit = classifier(torch.stack(states, 1), act)  # [B, K]
    cost_target = cost.clamp(0.0, 1.0)  # costs are 0/1 events in most tasks: a probability
    return loss + act.shape[1] * F.binary_cross_entropy_with_logits(c_logit, cost_target), torch.stack(errors)


MODEL_KEYS = tuple(
    "model/loss model/one_step_error model/k_step_error model/zero_change_error model/zero_change_k_step_error "
    "model/mean_delta_error model/mean_delta_k_step_error model/skill model/k_step_skill model/reward_error "
    "model/reward_baseline_error model/reward_skill model/cost_precision model/cost_recall model/cost_skill "
    "imagined/return imagined/cost imagined/kl imagined/on".split()
)
# ^ the progress.csv keys of the model and of imagination (NaN when not measured)


def model_skill(model, classifier, obs, act, next_obs, rew, cost, mean_delta, mean_reward: float) -> dict:
    """How good the model is on held-out windows (the arguments of multi_step_loss), against two predictors
    that need no model: zero change (s_{t+k} = s_t) and mean delta (s_{t+k} = s_t + k * the mean one-step
    change in D_real). State errors are mean L2 in normalised units at k = 1 and k = K; skill = 1 - model
    error / best baseline error (1: exact, <= 0: a baseline does as well). The reward head's MSE (targets
    clipped as in training) is set against predicting `mean_reward`; the cost classifier, at the real (s, a), is
    scored on cost > 0 (p > 0.5) and by its Brier score against the best constant (the windows' own cost rate)."""
    s_hat, model_errors, K = obs, [], act.shape[1]
    for k in range(K):
        s_hat, r_hat = model(s_hat, act[:, k])
        model_errors.append((s_hat - next_obs[:, k]).norm(dim=-1).mean().item())
        if k == 0:
            target = model.reward_target(rew[:, 0])
            reward_error = (r_hat - target).pow(2).mean().item()
            reward_baseline = (target - mean_reward).pow(2).mean().item()
    p, actual = torch.sigmoid(classifier(obs, act[:, 0])), cost[:, 0].clamp(0.0, 1.0)
    rate, brier, predicted = actual.mean().item(), (p - actual).pow(2).mean().item(), p > 0.5
    hits = (predicted & (actual > 0)).sum()  # precision and recall are NaN (0 / 0) where nothing is predicted or costs
    stats = {
        "model/one_step_error": model_errors[0],
        "model/k_step_error": model_errors[-1],
        "model/reward_error": reward_error,
        "model/reward_baseline_error": reward_baseline,
        "model/reward_skill": 1.0 - reward_error / max(reward_baseline, 1e-12),
        "model/cost_precision": (hits / predicted.sum()).item(),
        "model/cost_recall": (hits / (actual > 0).sum()).item(),
        "model/cost_skill": 1.0 - brier / (rate * (1.0 - rate)) if 0.0 < rate < 1.0 else float("nan"),
    }
    for name, k in (("", 0), ("k_step_", K - 1)):
        zero = (obs - next_obs[:, k]).norm(dim=-1).mean().item()
        mean = (obs + (k + 1) * mean_delta - next_obs[:, k]).norm(dim=-1).mean().item()
        stats[f"model/zero_change_{name}error"], stats[f"model/mean_delta_{name}error"] = zero, mean
        stats[f"model/{name}skill"] = 1.0 - model_errors[k] / max(min(zero, mean), 1e-12)
    return stats


def window_starts(done: np.ndarray, k: int) -> np.ndarray:
    """(t, env) of every k-step window of a [T, N] rollout that stays in one episode: no episode ends at
    t .. t+k-2 (one may end at the window's last step, whose next observation is the final one)."""
    T = done.shape[0]
    ends = np.concatenate([np.zeros((1, done.shape[1])), np.cumsum(done, axis=0)])  # ends before step t
    t = np.arange(T - k + 1)
    inside = (ends[t + k - 1] - ends[t]) == 0
    return np.argwhere(inside)


def replay_tensors(replay, obs_rms: "RunningMeanStd", device) -> dict:
    """Rollouts of D_real stacked as tensors [R, T, N, ...], their observations normalised with today's statistics."""
    keys = ("obs", "act", "next_obs", "rew", "cost")
    stack = lambda key: np.stack([obs_rms.normalize(r[key]) if "obs" in key else r[key] for r in replay])
    return {key: torch.tensor(stack(key), dtype=torch.float32, device=device) for key in keys}


def windows(data: dict, starts: np.ndarray, k: int):
    """Tensors of multi_step_loss for the window starts (rollout, t, env) [B, 3] of replay_tensors' data."""
    j, t, n = torch.as_tensor(starts).T[:, :, None]  # [B, 1] each
    steps = t + torch.arange(k)  # [B, K]
    rest = (data[key][j, steps, n] for key in ("act", "next_obs", "rew", "cost"))
    return (data["obs"][j[:, 0], t[:, 0], n[:, 0]], *rest)


def score_model(dyna: "Dyna", rollout: dict, obs_rms: "RunningMeanStd", k: int, device) -> dict:
    """model_skill of the model and the cost classifier on the windows of a rollout they have not trained on,
    with the baselines' statistics (mean one-step change, mean reward) from the replay buffer D_real."""
    dim = rollout["obs"].shape[-1]
    deltas = [(obs_rms.normalize(r["next_obs"]) - obs_rms.normalize(r["obs"])).reshape(-1, dim) for r in dyna.replay]
    mean_delta = torch.tensor(np.concatenate(deltas).mean(0), dtype=torch.float32, device=device)
    mean_reward = dyna.model.reward_stats[2].item()  # D_real's mean reward (clipped as the targets)
    starts = np.pad(window_starts(rollout["done"], k), ((0, 0), (1, 0)))  # (rollout 0, t, env)
    with torch.no_grad():
        data = windows(replay_tensors([rollout], obs_rms, device), starts, k)
        return model_skill(dyna.model, dyna.classifier, *data, mean_delta, mean_reward)


def train_model(dyna: "Dyna", obs_rms: "RunningMeanStd", args: "Args", device) -> float:
    """--model-steps minibatch steps of the multi-step loss (model and cost classifier), each on
    --model-batch-size windows drawn from all of D_real (by the model's own generator). Returns the mean loss."""
    dyna.model.fit_reward_scale(np.concatenate([r["rew"].ravel() for r in dyna.replay]))
    K = args.multi_step_k
    data = replay_tensors(dyna.replay, obs_rms, device)
    starts = [window_starts(r["done"], K) for r in dyna.replay]
    index = np.concatenate([np.column_stack([np.full(len(s), j), s]) for j, s in enumerate(starts)])
    params = dyna.optimizer.param_groups[0]["params"]
    losses = []
    for _ in range(args.model_steps):
        pick = torch.randint(len(index), (args.model_batch_size,), generator=dyna.generator).numpy()
        loss, _ = multi_step_loss(dyna.model, dyna.classifier, *windows(data, index[pick], K))
        dyna.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 10.0, foreach=True)
        dyna.optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses).mean().item()


def imagination_on(skill: float, update: int, args: Args) -> bool:
    """Whether this iteration runs an imagined update: after --model-start-iter iterations, and only while the
    model's skill (the lowest of its state, reward and cost skills) is above --imagination-min-skill (a NaN skill,
    not measured yet, never is)."""
    return args.model_rollouts > 0 and update > args.model_start_iter and skill > args.imagination_min_skill


def imagine(
    model, classifier, actor, start_obs, horizon: int, low, high, reward_range, cost_range, generator, cost_size=1.0
):
    """Roll the current policy through the model F from all starts at once: time-major obs [H+1, M, D],
    actions [H, M, A] (the policy's samples), rewards and costs [H, M] clipped to the ranges of real data. A
    step's cost is the classifier's probability of a cost at (s, a) times `cost_size`, a positive cost's mean."""
    obs, acts, rews, costs = [start_obs], [], [], []
    std = actor.log_std.exp()
    with torch.no_grad():
        for _ in range(horizon):
            mean = actor.mean(obs[-1])
            action = mean + std * torch.randn(mean.shape, generator=generator).to(mean.device)
            clipped = torch.max(torch.min(action, high), low)
            costs.append((cost_size * torch.sigmoid(classifier(obs[-1], clipped))).clamp(*cost_range))
            next_obs, r_hat = model(obs[-1], clipped)
            obs.append(next_obs.clamp(-10.0, 10.0))  # the observation normaliser's clip range
            acts.append(action)
            rews.append(r_hat.clamp(*reward_range))
    return torch.stack(obs), torch.stack(acts), torch.stack(rews), torch.stack(costs)


def stored_rollout(raw_buf, act_buf, rew_buf, cost_buf, done_buf, final_raw: list, low, high) -> dict:
    """A real rollout as D_real keeps it: raw observations [T, N, D] and the next ones (the final observation
    where an episode ended), the actions the envs ran (clipped), rewards, costs and episode ends."""
    next_raw = raw_buf[1:].copy()
    for t, i, final in final_raw:
        next_raw[t, i] = final
    return {
        "obs": raw_buf[:-1].copy(),
        "act": np.clip(act_buf, low, high),
        "rew": rew_buf.copy(),
        "cost": cost_buf.copy(),
        "next_obs": next_raw,
        "done": done_buf.copy(),
    }


class Dyna:
    """The model side of Algorithm 1, kept across iterations: F and its cost classifier C, their optimizer and
    generator (minibatches, imagined starts), D_real (whole rollouts), the action box, the real rewards' and costs'
    range so far (imagined ones are clipped to it) and the mean positive cost."""

    def __init__(self, obs_dim: int, act_dim: int, low, high, args: "Args", device):
        self.generator = torch.Generator().manual_seed(args.seed + 1)
        self.model = DynamicsModel(obs_dim, act_dim, args.model_hidden, self.generator).to(device)
        groups = observation_groups(args.env_id)
        self.classifier = CostClassifier(obs_dim, act_dim, groups, self.generator).to(device)
        params = list(self.model.parameters()) + list(self.classifier.parameters())
        self.optimizer = torch.optim.Adam(params, lr=args.model_lr, fused=True)
        self.replay = deque(maxlen=args.buffer_rollouts)
        self.bounds = tuple(torch.tensor(x, dtype=torch.float32, device=device) for x in (low, high))
        self.reward_range = [np.inf, -np.inf]
        self.cost_range = [np.inf, -np.inf]
        self.cost_size = 1.0  # the mean of D_real's positive costs (a decision's cost sums its held steps')
        self.skill = np.nan  # the lowest of the model's state, reward and cost skills on the latest rollout

    def learn(self, rollout: dict, obs_rms: "RunningMeanStd", args: "Args", device) -> dict:
        """Steps 2 and 3: score the model on the rollout's windows before it trains on them (held out; against
        the baselines, once D_real has data), store the rollout in D_real, train. Returns the model's keys."""
        rew, cost = rollout["rew"], rollout["cost"]
        self.reward_range = [min(self.reward_range[0], rew.min()), max(self.reward_range[1], rew.max())]
        self.cost_range = [min(self.cost_range[0], cost.min()), max(self.cost_range[1], cost.max())]
        start = time.time()
        self.classifier.fit_input_scale(obs_rms.mean, obs_rms.var, obs_rms.eps)
        stats = score_model(self, rollout, obs_rms, args.multi_step_k, device) if self.replay else {}
        judged = ("", "reward_", "cost_") if cost.any() else ("", "reward_")  # the classifier, where there is a cost
        self.skill = np.min([stats.get(f"model/{name}skill", np.nan) for name in judged])  # NaN while any is
        self.replay.append(rollout)
        positive = np.concatenate([r["cost"][r["cost"] > 0] for r in self.replay])
        self.cost_size = float(positive.mean()) if positive.size else 1.0
        stats["model/loss"] = train_model(self, obs_rms, args, device)
        stats["time_model"] = time.time() - start
        return stats

    def imagination(self, update: int, states, agent: tuple, cost_weight: float, args) -> dict:
        """Step 4, gated by imagination_on on self.skill (NaN, never on, until D_real had data): --model-rollouts
        starts drawn from `states`, then imagined_update from them, agent = (actor, critic, cost_critic, optimizer,
        critic_optimizer). Returns imagined/on, the imagined/* keys when on, and time_imagination."""
        start = time.time()
        stats = {"imagined/on": float(imagination_on(self.skill, update, args))}
        if stats["imagined/on"]:
            pick = torch.randint(len(states), (args.model_rollouts,), generator=self.generator).to(states.device)
            stats |= imagined_update(self, agent, states[pick], cost_weight, args)
        stats["time_imagination"] = time.time() - start
        return stats


def imagined_update(dyna: "Dyna", agent: tuple, start_obs, cost_weight: float, args: "Args") -> dict:
    """Imagination: H model steps of the current policy from `start_obs` (all at once), then the CPPO update on
    them: the paper's M-step (regress) within --imagined-kl-frac * delta, no step scaling, the critics trained only
    with --imagined-critics, and the real update's weight on cost (lambda)."""
    actor, critic, cost_critic = agent[:3]
    rest = (*dyna.bounds, dyna.reward_range, dyna.cost_range, dyna.generator, dyna.cost_size)
    img_obs, img_act, img_rew, img_cost = imagine(dyna.model, dyna.classifier, actor, start_obs, args.horizon, *rest)
    no_end = torch.zeros_like(img_rew)  # rows end at H: GAE bootstraps V(s_H) there, per column
    no_final = torch.zeros((2,) + img_rew.shape, device=img_rew.device)
    batch = advantages_batch(actor, critic, cost_critic, img_obs, img_act, img_rew, img_cost, no_end, no_final, args)
    imagined_args = dataclasses.replace(args, max_kl=args.imagined_kl_frac * args.max_kl, m_step="regress")
    stats = cppo_update(
        *agent, batch, cost_weight, imagined_args, scale_step=False, train_critics=args.imagined_critics
    )
    return {
        "imagined/return": img_rew.sum(0).mean().item(),
        "imagined/cost": img_cost.sum(0).mean().item(),
        "imagined/kl": stats["kl"],
    }


class PIDLagrangeMultiplier:
    """PID-Lagrangian (Stooke et al. 2020): lambda = (P + I + D)+ on e = J_c - d, with P = kp * e, I = (I + ki * e)+
    and D = kd * (e - e_prev)+; P and D damp the oscillation of gradient ascent (I alone). e is clipped to [-b, b]
    (`error_bound`, default d): J_c falls at most d under d, so a few early rollouts far above it would wind I up."""

    def __init__(self, cost_limit: float, init: float, kp: float, ki: float, kd: float, error_bound=None):
        self.cost_limit, self.kp, self.ki, self.kd = cost_limit, kp, ki, kd
        self.error_bound = max(cost_limit, 1.0) if error_bound is None else error_bound
        self.integral, self.prev_error, self.value = init, None, init
        self.p = self.d = 0.0

    def update(self, episodic_cost: float) -> float:
        error = min(max(episodic_cost - self.cost_limit, -self.error_bound), self.error_bound)
        self.integral = max(0.0, self.integral + self.ki * error)
        self.p = self.kp * error
        self.d = 0.0 if self.prev_error is None else self.kd * max(0.0, error - self.prev_error)
        self.prev_error = error
        self.value = max(0.0, self.p + self.integral + self.d)
        return self.value


class ActionRepeat(gymnasium.Wrapper):
    """Hold each action for k env steps, summing reward and cost, until the episode ends."""

    def __init__(self, env, k: int):
        super().__init__(env)
        self.k = k

    def step(self, action):
        reward = cost = 0.0
        for _ in range(self.k):
            obs, r, c, terminated, truncated, info = self.env.step(action)
            reward, cost = reward + r, cost + c
            if terminated or truncated:
                break
        return obs, reward, cost, terminated, truncated, info


def repeat_layout(args: Args) -> Args:
    """Fill --action-repeat (4 on navigation tasks, 1 on velocity tasks) and then --num-steps left at None, so
    that a rollout stays 8000 env steps."""
    k = args.action_repeat if args.action_repeat is not None else (1 if "Velocity" in args.env_id else 4)
    if args.num_steps is None and k >= 1:
        args = dataclasses.replace(args, num_steps=max(1, 8000 // max(1, env_layout(args).num_envs * k)))
    return dataclasses.replace(args, action_repeat=k)


def task_layout(args: Args) -> Args:
    """Fill what is left at None by task, (navigation, velocity); repeat_layout then fills --num-steps."""
    fill = dict(max_step_scale=(0.0, 10.0), action_repeat=(8, 1), num_minibatches=(16, 32))
    task = int("Velocity" in args.env_id)
    return dataclasses.replace(args, **{k: v[task] for k, v in fill.items() if getattr(args, k) is None})


def main(args: Args) -> dict:
    args = env_layout(repeat_layout(task_layout(args)))
    check_args(args)
    if args.eval_checkpoint:
        return evaluate_checkpoint(args)
    envs, device, run_dir, logger = start_run(args)

    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    low, high = envs.single_action_space.low, envs.single_action_space.high
    actor = Actor(obs_dim, act_dim).to(device)
    k = actor.action_repeat.fill_(args.action_repeat).item()
    discounts = ("gamma", "gae_lambda", "cost_gamma", "cost_gae_lambda")  # per decision: over k env steps
    per_decision = dataclasses.replace(args, **{name: getattr(args, name) ** k for name in discounts})
    critic, cost_critic = Critic(obs_dim).to(device), Critic(obs_dim).to(device)
    critic_params = list(critic.parameters()) + list(cost_critic.parameters())
    optimizer = torch.optim.Adam(actor.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    critic_optimizer = torch.optim.Adam(critic_params, lr=args.critic_learning_rate, eps=1e-5, fused=True)
    obs_rms = RunningMeanStd(obs_dim)
    cost_window = CostWindow(args.cost_window)
    multiplier = PIDLagrangeMultiplier(args.pid_setpoint * args.cost_limit, 0.0, args.pid_kp, args.pid_ki, args.pid_kd)

    dyna = Dyna(obs_dim, act_dim, low, high, args, device)  # the model F, its optimizer, D_real
    agent = (actor, critic, cost_critic, optimizer, critic_optimizer)  # what an imagined update trains
    T, N = args.num_steps, args.num_envs
    num_updates = args.total_timesteps // (T * N * k)
    # Rollout storage stays in numpy (cheap per-step writes) and goes to torch once per rollout.
    obs_buf = np.zeros((T + 1, N, obs_dim), dtype=np.float32)  # normalised, as the policy saw them; row T: the next obs
    raw_buf = np.zeros((T + 1, N, obs_dim), dtype=np.float32)  # the same, raw, for the model's replay buffer
    act_buf = np.zeros((T, N, act_dim))  # float64, MuJoCo's own dtype: float32 would be converted at every step
    rew_buf, cost_buf, done_buf = (np.zeros((T, N), dtype=np.float32) for _ in range(3))

    raw_obs, _ = envs.reset(seed=args.seed)
    obs_rms.update(raw_obs)
    obs_buf[0], raw_buf[0] = obs_rms.normalize(raw_obs), raw_obs
    ep_return, ep_cost, ep_len = np.zeros(N), np.zeros(N), np.zeros(N, dtype=int)
    last_episodes = Episode(np.nan, np.nan, np.nan)  # the means of the latest finished episodes
    global_step = 0
    cumulative_cost = 0.0
    start_time = time.time()
    rng = np.random.default_rng(args.seed)

    for update in range(1, num_updates + 1):
        lr = args.learning_rate * (1.0 - (update - 1.0) / num_updates) if args.anneal_lr else args.learning_rate
        optimizer.param_groups[0]["lr"] = lr
        critic_optimizer.param_groups[0]["lr"] = args.critic_learning_rate * lr / args.learning_rate
        finished = []  # the Episodes that end in this rollout
        final_obs = []  # (t, env, normalised final observation) of the episodes truncated by the time limit
        final_raw = []  # (t, env, raw final observation) of every episode that ended, for the model

        # Rollout: N environments for T steps, actions a = mean(s) + std * noise with the noise drawn up front.
        rollout_start = time.time()
        std = actor.log_std.exp().detach().cpu().numpy()
        noise = rng.standard_normal((T, N, act_dim))
        for t in range(T):
            with torch.no_grad():
                mean = actor.mean(torch.as_tensor(obs_buf[t], device=device)).cpu().numpy()
            act_buf[t] = mean + std * noise[t]
            raw_obs, reward, cost, terminated, truncated, info = step_envs(
                envs, np.clip(act_buf[t], low, high), run_dir
            )
            global_step += N * k
            cumulative_cost += cost.sum()
            ep_return, ep_cost, ep_len = ep_return + reward, ep_cost + cost, ep_len + k  # length in env steps
            done = terminated | truncated
            rew_buf[t], cost_buf[t], done_buf[t] = reward, cost, done
            obs_rms.update(raw_obs)
            obs_buf[t + 1], raw_buf[t + 1] = obs_rms.normalize(raw_obs), raw_obs
            if done.any():
                for i in np.flatnonzero(truncated & ~terminated):  # time limit: the episode could go on
                    final_obs.append((t, i, obs_rms.normalize(info["final_observation"][i])))
                for i in np.flatnonzero(done):
                    final_raw.append((t, i, info["final_observation"][i]))
                    finished.append(Episode(ep_return[i], ep_cost[i], ep_len[i]))
                ep_return[done], ep_cost[done], ep_len[done] = 0.0, 0.0, 0

        update_start = time.time()
        # Real data: log-probs, values and GAE in one batch (advantages_batch says how an episode's end is valued).
        observations, actions, rewards, costs, dones = (
            torch.tensor(b, dtype=torch.float32, device=device) for b in (obs_buf, act_buf, rew_buf, cost_buf, done_buf)
        )
        final_values = bootstrap_values(critic, cost_critic, final_obs, (T, N), device)
        batch = advantages_batch(
            actor, critic, cost_critic, observations, actions, rewards, costs, dones, final_values, per_decision
        )

        # lambda follows J_c over the window of recent real episodes; imagined costs never enter it.
        if finished:
            last_episodes = Episode(*np.mean(finished, axis=0))
            multiplier.update(cost_window.add(episode.cost for episode in finished))
        stats = cppo_update(actor, critic, cost_critic, optimizer, critic_optimizer, batch, multiplier.value, args)

        # The model: scored on this rollout (held out), then trained; imagination from its states if good enough.
        rollout = stored_rollout(raw_buf, act_buf, rew_buf, cost_buf, done_buf, final_raw, low, high)
        model_stats = dyna.learn(rollout, obs_rms, args, device)
        model_stats |= dyna.imagination(update, batch["obs"], agent, multiplier.value, per_decision)
        obs_buf[0], raw_buf[0] = obs_buf[T], raw_buf[T]  # the next rollout starts where this one stopped

        for name in ("policy_loss", "value_loss", "cost_value_loss", "model/loss"):
            if not np.isfinite({**stats, **model_stats}[name]):
                raise SystemExit(f"error: non-finite {name} at step {global_step}; stopping")
        logger.log(
            {
                **episode_columns(global_step, last_episodes, finished, cumulative_cost, start_time),
                "cost_limit": args.cost_limit,
                "cost_estimate": cost_window.mean,
                "cost_estimate_episodes": len(cost_window.costs),
                "lagrange_multiplier": multiplier.value,
                "pid_p": multiplier.p,
                "pid_i": multiplier.integral,
                "pid_d": multiplier.d,
                "learning_rate": lr,
                **stats,
                **{k: model_stats.get(k, np.nan) for k in MODEL_KEYS},
                "time_rollout": update_start - rollout_start,
                "time_update": time.time() - update_start,
                **{k: model_stats[k] for k in ("time_model", "time_imagination")},
            }
        )

    return finish_run(args, envs, actor, obs_rms, device, run_dir, logger, start_time)


# ----------------------------------------------------------------------------------------------------------------
# Plumbing: the same in every script of this repository (tests/test_scripts.py checks it), except check_args,
# which checks this script's own arguments (cvpo.py also has its own env_layout, save_checkpoint, load_checkpoint;
# this script its own make_envs and evaluate, which hold each action for --action-repeat env steps):
# argument checks, env layout, observation normalisation, vector envs, evaluation, checkpoints, the run logger.
# Nothing above depends on where these are defined: Python looks the names up when main runs.
# ----------------------------------------------------------------------------------------------------------------


def env_layout(args: Args) -> Args:
    """Fill in --num-envs and --num-steps left at None. A navigation env is a worker process of ~500 MB (MuJoCo's
    arena, rebuilt at every reset), so navigation tasks run 2; velocity tasks step 8 in this process. The batch
    stays 8000 samples, 8 episodes of 1000 steps. More cores: raise --num-envs (docs/reference.md, Env layout)."""
    num_envs = args.num_envs if args.num_envs is not None else (8 if "Velocity" in args.env_id else 2)
    num_steps = args.num_steps if args.num_steps is not None else max(1, 8000 // max(1, num_envs))
    return dataclasses.replace(args, num_envs=num_envs, num_steps=num_steps)


def check_args(args: Args) -> None:
    """Reject bad input with one clear line, before anything is built."""
    if args.env_id not in safe_registry:
        raise SystemExit(
            f"error: unknown env id {args.env_id!r} (not in safety_gymnasium's registry; e.g. SafetyPointGoal1-v0)"
        )
    cppo_counts = ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "cost_window")
    model_counts = ("horizon", "multi_step_k", "model_steps", "model_hidden", "model_batch_size", "buffer_rollouts")
    for name in (*cppo_counts, *model_counts, "action_repeat"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.model_rollouts < 0 or args.model_start_iter < 0:
        raise SystemExit("error: --model-rollouts and --model-start-iter must be >= 0")
    if not 0 < args.imagined_kl_frac <= 1:
        raise SystemExit(f"error: --imagined-kl-frac must be in (0, 1], got {args.imagined_kl_frac}")
    if np.isnan(args.imagination_min_skill):
        raise SystemExit("error: --imagination-min-skill must be a number (or -inf), got nan")
    episode_len = gymnasium.spec(args.env_id).max_episode_steps
    if args.horizon * args.action_repeat > episode_len:
        raise SystemExit(
            f"error: --horizon {args.horizon} (decisions of {args.action_repeat} steps) is longer than an episode "
            f"of {args.env_id} ({episode_len})"
        )
    if args.multi_step_k > args.num_steps:
        raise SystemExit(f"error: --multi-step-k {args.multi_step_k} is longer than a rollout (--num-steps)")
    for name in ("learning_rate", "critic_learning_rate", "max_kl", "clip_coef", "model_lr"):
        if not getattr(args, name) > 0 or not np.isfinite(getattr(args, name)):
            raise SystemExit(f"error: --{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")
    if not args.cost_limit >= 0:
        raise SystemExit(f"error: --cost-limit must be >= 0, got {args.cost_limit}")
    if not 0 < args.pid_setpoint <= 1:
        raise SystemExit(f"error: --pid-setpoint must be in (0, 1] (a fraction of the limit), got {args.pid_setpoint}")
    if not (args.max_step_scale == 0 or 1 <= args.max_step_scale < math.inf):
        raise SystemExit(f"error: --max-step-scale must be 0 (no scaling) or >= 1, got {args.max_step_scale}")
    if args.eval_episodes < 0:
        raise SystemExit(f"error: --eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.total_timesteps < args.num_envs * args.num_steps * args.action_repeat:
        raise SystemExit(
            f"error: --total-timesteps {args.total_timesteps} is smaller than one rollout "
            f"(num_envs * num_steps * action_repeat = {args.num_envs * args.num_steps * args.action_repeat})"
        )
    if args.num_envs * args.num_steps < args.num_minibatches:
        raise SystemExit("error: --num-minibatches is larger than the batch (num_envs * num_steps)")


def check_spaces(observation_space, action_space) -> None:
    """A Gaussian MLP policy needs a flat Box observation and a Box action."""
    if not isinstance(action_space, spaces.Box):
        raise SystemExit(f"error: this script needs a continuous (Box) action space, the env has {action_space}")
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise SystemExit(f"error: this script needs a flat Box observation, the env has {observation_space}")


class RunningMeanStd:
    """Running mean and variance of observations (parallel update of Chan et al.), used to normalise them."""

    def __init__(self, shape, clip: float = 10.0, eps: float = 1e-8):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4
        self.clip, self.eps = clip, eps

    def update(self, x: np.ndarray) -> None:
        n = x.shape[0]
        batch_mean = x.sum(axis=0) / n
        batch_var = np.square(x - batch_mean).sum(axis=0) / n
        delta, total = batch_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + self.eps), -self.clip, self.clip)

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = np.asarray(state["mean"]), np.asarray(state["var"]), float(state["count"])


def code_version(script: str = __file__) -> dict:
    """Which code a run ran: git_commit is HEAD; code_commit is the last commit that changed this script, with
    "-dirty" appended if the file differs from it (benchmark.sh resumes on it, so docs commits keep finished
    runs valid). Both are None outside a git checkout, e.g. for a copy of the script alone."""
    folder, name = os.path.split(os.path.abspath(script))

    def git(*cmd):
        try:
            out = subprocess.run(["git", *cmd], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    head, last = git("rev-parse", "HEAD"), git("log", "-1", "--format=%H", "--", name)
    if not last:  # not a checkout, or the file was never committed
        return {"git_commit": head, "code_commit": None}
    dirty = git("diff", "--quiet", last, "--", name) is None
    return {"git_commit": head, "code_commit": last + ("-dirty" if dirty else "")}


def start_run(args: Args):
    """Seed everything, build the envs, write the run folder's config.json, open the logger."""
    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(1)  # small MLPs: one thread is fastest and leaves the other core to the envs
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    envs = make_envs(args)
    run_dir = os.path.join("runs", run_name)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({**dataclasses.asdict(args), **code_version()}, f, indent=2)
    return envs, device, run_dir, RunLogger(run_dir, args, run_name)


def finish_run(args: Args, envs, actor, obs_rms, device, run_dir: str, logger, start_time: float) -> dict:
    """Close the envs, save the policy with its normalisation (--save-model), evaluate it both ways, write
    summary.json. Returns the summary."""
    envs.close()
    summary = {"train_seconds": time.time() - start_time}
    if args.save_model:
        path = os.path.join(run_dir, f"{args.exp_name}.pt")
        save_checkpoint(path, actor, obs_rms, args)
        print(f"model saved to {path}")
    if args.eval_episodes > 0:
        video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
        summary.update(
            final_evaluation(actor, obs_rms, args.env_id, args.eval_episodes, args.seed + 10_000, device, video_dir)
        )
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    logger.close(summary)
    return summary


class Episode(NamedTuple):
    """A finished episode's return, cost and length, or the means of several."""

    ret: float
    cost: float
    length: float


def episode_columns(
    global_step: int, last_episodes: Episode, finished: list, cumulative_cost: float, start_time: float
):
    """The first columns of every progress row: steps, the latest episodes' means, speed, cost so far."""
    return {
        "global_step": global_step,
        "episodic_return": last_episodes.ret,
        "episodic_cost": last_episodes.cost,
        "episodic_length": last_episodes.length,
        "sps": int(global_step / (time.time() - start_time)),
        "episodes": len(finished),
        "cumulative_cost": cumulative_cost,
        "cost_rate": cumulative_cost / global_step,
    }


def make_envs(args: Args):
    asynchronous = args.vector_env == "async" or (
        args.vector_env == "auto" and args.num_envs > 1 and "Velocity" not in args.env_id
    )
    k = args.action_repeat  # this script's own: each env holds an action for k steps
    wrappers = (lambda env: ActionRepeat(env, k)) if k > 1 else None
    envs = safety_gymnasium.vector.make(
        args.env_id, num_envs=args.num_envs, asynchronous=asynchronous, wrappers=wrappers
    )
    try:
        check_spaces(envs.single_observation_space, envs.single_action_space)
    except SystemExit:
        envs.close()
        raise
    return envs


def step_envs(envs, action: np.ndarray, run_dir: str):
    """envs.step(action); a worker process that died (killed by the kernel's OOM killer, crashed) ends the run with
    one line naming the cause, instead of an EOFError traceback. progress.csv keeps the rows logged so far."""
    try:
        return envs.step(action)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        processes = getattr(envs, "processes", [])
        deadline = time.time() + 2.0
        while all(p.is_alive() for p in processes) and time.time() < deadline:  # its pipe closes before it is reaped
            time.sleep(0.05)
        causes = []
        for i, process in [(i, p) for i, p in enumerate(processes) if not p.is_alive()]:
            code = process.exitcode
            cause = f"exit code {code}" if code is None or code >= 0 else f"killed by {signal.Signals(-code).name}"
            if code == -signal.SIGKILL:
                cause += " (likely out of memory: the kernel's OOM killer sends SIGKILL; see README, Memory)"
            causes.append(f"env worker {i} (pid {process.pid}) {cause}")
        envs.close(terminate=True)
        raise SystemExit(
            f"error: {'; '.join(causes) or 'an env worker process died'}; "
            f"the rows logged so far are in {os.path.join(run_dir, 'progress.csv')}"
        ) from None


def policy_action(
    actor: Actor, obs_rms: RunningMeanStd, obs: np.ndarray, device="cpu", rng: Optional[np.random.Generator] = None
) -> np.ndarray:
    """The action for raw observations: the mean action, or with `rng` one sampled from the policy (as in training).
    The caller clips it to the action box."""
    with torch.no_grad():
        x = torch.as_tensor(obs_rms.normalize(obs), dtype=torch.float32, device=device)
        mean, std = actor.mean(x).cpu().numpy(), actor.log_std.exp().cpu().numpy()
    return mean if rng is None else mean + std * rng.standard_normal(mean.shape)


def evaluate(actor, obs_rms, env_id: str, episodes: int, seed: int, device="cpu", video_path=None, stochastic=False):
    """Run `episodes` episodes with the mean action, or with `stochastic` with sampled actions (noise seeded by
    `seed`); record the first one to `video_path` if given. Return the episodes' (returns, costs) as arrays."""
    env = safety_gymnasium.make(env_id, render_mode="rgb_array" if video_path else None)
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng(seed) if stochastic else None
    returns, costs, frames = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        ep_return, ep_cost = 0.0, 0.0
        while not done:
            action = np.clip(policy_action(actor, obs_rms, obs[None], device, rng)[0], low, high)
            for _ in range(int(actor.action_repeat)):  # this script's own: each action held as in training
                obs, reward, cost, terminated, truncated, _ = env.step(action)
                ep_return, ep_cost = ep_return + reward, ep_cost + cost
                done = terminated or truncated
                if video_path and episode == 0:
                    frames.append(env.render())
                if done:
                    break
        returns.append(ep_return)
        costs.append(ep_cost)
    env.close()
    if frames:
        import imageio

        os.makedirs(os.path.dirname(video_path), exist_ok=True)
        imageio.mimsave(video_path, frames, fps=env.metadata.get("render_fps", 30))
    return np.array(returns), np.array(costs)


def final_evaluation(actor, obs_rms, env_id: str, episodes: int, seed: int, device="cpu", video_dir=None) -> dict:
    """Evaluate in both modes: `stochastic` samples actions, as in training (the policy that was trained, and the
    one the cost limit constrains); `deterministic` takes the mean action, as is usual for reporting returns.
    Returns the summary keys eval_{mode}_{return,cost}[_std] and prints one line per mode."""
    summary = {}
    for mode in ("stochastic", "deterministic"):
        video_path = os.path.join(video_dir, f"eval-{mode}-episode-0.mp4") if video_dir else None
        returns, costs = evaluate(actor, obs_rms, env_id, episodes, seed, device, video_path, mode == "stochastic")
        summary.update(
            {
                f"eval_{mode}_return": float(returns.mean()),
                f"eval_{mode}_return_std": float(returns.std()),
                f"eval_{mode}_cost": float(costs.mean()),
                f"eval_{mode}_cost_std": float(costs.std()),
            }
        )
        print(
            f"eval ({mode}) over {episodes} episodes: return {returns.mean():.2f} ± {returns.std():.2f}, "
            f"cost {costs.mean():.2f} ± {costs.std():.2f}",
            flush=True,
        )
    return summary


def save_checkpoint(path: str, actor: Actor, obs_rms: RunningMeanStd, args: Args) -> None:
    torch.save(
        {
            "actor": actor.state_dict(),
            "obs_rms": obs_rms.state_dict(),
            "args": dataclasses.asdict(args),
            "obs_dim": obs_rms.mean.shape[0],
            "act_dim": actor.log_std.shape[0],
        },
        path,
    )


def load_checkpoint(path: str):
    """Rebuild (actor, obs_rms) from a `--save-model` file, ready for `policy_action` or `evaluate`."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    actor = Actor(ckpt["obs_dim"], ckpt["act_dim"])
    actor.load_state_dict(ckpt["actor"])
    obs_rms = RunningMeanStd(ckpt["obs_dim"])
    obs_rms.load_state_dict(ckpt["obs_rms"])
    return actor, obs_rms


def evaluate_checkpoint(args: Args) -> dict:
    """--eval-checkpoint: load a `--save-model` file and run only the final evaluation (both modes, on the CPU) on
    the env it was trained on; summary.json (and videos/ with --capture-video) go to a new run folder."""
    if args.eval_episodes < 1:
        raise SystemExit(f"error: --eval-checkpoint needs --eval-episodes >= 1, got {args.eval_episodes}")
    try:
        env_id = torch.load(args.eval_checkpoint, map_location="cpu", weights_only=False)["args"]["env_id"]
        actor, obs_rms = load_checkpoint(args.eval_checkpoint)
    except Exception as e:  # missing file, another script's checkpoint, not a checkpoint at all
        raise SystemExit(
            f"error: --eval-checkpoint {args.eval_checkpoint} is not a checkpoint of this script "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    run_dir = os.path.join("runs", f"{env_id}__{args.exp_name}-eval__{args.seed}__{int(time.time())}")
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({**dataclasses.asdict(args), "env_id": env_id}, f, indent=2)
    torch.set_num_threads(1)  # as in training
    print(f"evaluating {args.eval_checkpoint} on {env_id}, episodes seeded from --seed {args.seed} + 10000", flush=True)
    video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
    summary = final_evaluation(actor, obs_rms, env_id, args.eval_episodes, args.seed + 10_000, video_dir=video_dir)
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def minutes(seconds: float) -> str:
    """Seconds as m:ss (a 1e6-step navigation run takes most of an hour)."""
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class RunLogger:
    """One progress row per call of log: to progress.csv, to W&B with --track, and a progress line on stdout."""

    def __init__(self, run_dir: str, args: Args, run_name: str):
        self.path = os.path.join(run_dir, "progress.csv")
        self.writer = None
        self.wandb = None
        self.start = time.time()  # for the elapsed and left times
        self.total_timesteps = args.total_timesteps
        if args.track:
            import wandb

            kwargs = dict(
                project=args.wandb_project_name,
                entity=args.wandb_entity,
                config=dataclasses.asdict(args),
                name=run_name,
                dir=run_dir,
            )
            try:
                wandb.init(**kwargs)
            except Exception as e:  # most often: no API key and no WANDB_MODE on a machine without login
                print(
                    f"wandb: online init failed ({str(e).splitlines()[0]}); logging offline, "
                    "upload later with `wandb sync`",
                    file=sys.stderr,
                )
                wandb.init(mode="offline", **kwargs)
            self.wandb = wandb

    def log(self, row: dict) -> None:
        if self.writer is None:
            self.file = open(self.path, "w", newline="")
            self.writer = csv.DictWriter(self.file, fieldnames=list(row))
            self.writer.writeheader()
        self.writer.writerow(row)
        self.file.flush()
        if self.wandb:
            self.wandb.log(row, step=row["global_step"])
        elapsed = time.time() - self.start
        left = elapsed * (self.total_timesteps - row["global_step"]) / max(row["global_step"], 1)
        print(
            f"step {row['global_step']:>9d} | return {row['episodic_return']:9.2f} | "
            f"cost {row['episodic_cost']:7.2f} | sps {row['sps']:6d} | elapsed {minutes(elapsed)} | "
            f"left {minutes(left)}",
            flush=True,
        )

    def close(self, summary: dict) -> None:
        if self.writer is not None:
            self.file.close()
        if self.wandb:
            self.wandb.summary.update(summary)
            self.wandb.finish()


if __name__ == "__main__":
    main(tyro.cli(Args))
