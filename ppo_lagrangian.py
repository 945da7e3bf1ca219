"""PPO-Lagrangian: PPO with a cost critic and a Lagrange multiplier, on Safety-Gymnasium, in one file.

The standard safe-RL baseline (Ray, Achiam & Amodei 2019, "Benchmarking Safe Exploration in Deep RL") with the
PID-Lagrangian multiplier (Stooke, Achiam & Abbeel 2020, arXiv:2007.03964). Constraint: mean episodic cost
J_c <= d. Each update first moves the multiplier lambda >= 0 toward the constraint, J_c measured on the last
finished episodes, then runs PPO (Schulman et al. 2017, arXiv:1707.06347) on (A_r - lambda * A_c) / (1 + lambda).

Departures from the papers, each measured in docs/ppo_lagrangian.md:
- lambda by PID (kp 0.1, ki 0.01, kd 0.01); the textbook ascent lambda <- (lambda + ki (J_c - d))+ is its I term
  alone: --pid-kp 0 --pid-kd 0 --pid-setpoint 1 --pid-error-bound inf.
- --pid-setpoint 0.8: the PID steers J_c to 0.8 d, not d (a learning policy's cost drifts above the PID's aim).
- --pid-error-bound: the PID's error is clipped to +-its set point (anti-windup); inf: Stooke et al.'s unclipped error.
- --cost-window 32: J_c over the last 32 finished episodes, not the latest rollout's 8 (--cost-window 8: textbook).
- --action-repeat 4 on navigation tasks: each action is held for 4 env steps (rewards and costs summed, discounts
  per decision gamma^4); 1 (every step) on velocity tasks.

Usage: python ppo_lagrangian.py --env-id SafetyPointGoal1-v0 --cost-limit 25 --save-model
       python ppo_lagrangian.py --eval-checkpoint runs/<run>/ppo_lagrangian.pt   # evaluate a saved policy, both modes
"""

import csv
import dataclasses
import json
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
    """the Adam learning rate of actor and critic"""
    anneal_lr: bool = True
    """if toggled, decay the learning rate linearly to 0 over training"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.95
    """the GAE lambda"""
    cost_gamma: float = 0.99
    """the discount factor of the cost critic"""
    cost_gae_lambda: float = 0.95
    """the GAE lambda of the cost advantages"""
    lagrangian_multiplier_init: float = 0.001
    """the initial value of lambda"""
    cost_window: int = 32
    """J_c is the mean cost of the last this many finished episodes (8: one rollout's episodes, the textbook J_c)"""
    pid_kp: float = 0.1
    """PID-Lagrangian proportional gain"""
    pid_ki: float = 0.01
    """PID-Lagrangian integral gain"""
    pid_kd: float = 0.01
    """PID-Lagrangian derivative gain"""
    pid_setpoint: float = 0.8
    """the PID steers J_c to this fraction of d (a learning policy's cost drifts up: aimed at d, it settles above)"""
    pid_error_bound: Optional[float] = None
    """the PID's error J_c - setpoint * d is clipped to +-this (None: setpoint * d, at least 1; inf: unclipped)"""
    num_minibatches: int = 32
    """minibatches per epoch (32 of 250 samples; 4 of 2000 update 3x faster but barely move the policy)"""
    update_epochs: int = 10
    """the number of passes over each rollout"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient epsilon"""
    ent_coef: float = 0.0
    """the entropy bonus coefficient"""
    vf_coef: float = 0.5
    """the value-loss coefficient"""
    max_grad_norm: float = 0.5
    """the maximum norm of the gradient"""
    target_kl: Optional[float] = None
    """stop the epochs early once the approximate KL exceeds this (None: never)"""
    action_repeat: Optional[int] = None
    """env steps per action, rewards and costs summed (None: 4 on navigation, 1 on velocity tasks); gammas per step"""


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

    def log_prob_entropy(self, obs: torch.Tensor, action: torch.Tensor):
        entropy = (0.5 + 0.5 * np.log(2 * np.pi) + self.log_std).sum()
        return gaussian_log_prob(action, self.mean(obs), self.log_std), entropy


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


class CostWindow:
    """The J_c that lambda follows: the mean episodic cost of the last `size` finished episodes (NaN before any)."""

    def __init__(self, size: int):
        self.costs = deque(maxlen=size)

    def add(self, episode_costs) -> float:
        self.costs.extend(float(c) for c in episode_costs)
        return self.mean

    @property
    def mean(self) -> float:
        return float(np.mean(self.costs)) if self.costs else float("nan")


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
        logp = gaussian_log_prob(act, actor.mean(obs[:-1]), actor.log_std)
        values, cost_values = critic(obs), cost_critic(obs)
        next_values = torch.where(done.bool(), final_values[0], values[1:])
        next_cost_values = torch.where(done.bool(), final_values[1], cost_values[1:])
    adv, ret = compute_gae(rew, values[:-1], next_values, done, args.gamma, args.gae_lambda)
    cost_adv, cost_ret = compute_gae(
        cost, cost_values[:-1], next_cost_values, done, args.cost_gamma, args.cost_gae_lambda
    )
    batch = dict(obs=obs[:-1], act=act, logp=logp, adv=adv, cost_adv=cost_adv, ret=ret, cost_ret=cost_ret)
    return {name: x.flatten(0, 1) for name, x in batch.items()}  # [T, M, ...] -> [T * M, ...]


def ppo_update(actor, critic, cost_critic, optimizer, params: list, batch: dict, lam: float, args: "Args") -> dict:
    """PPO's update on the Lagrangian advantage (A - lam A_c) / (1 + lam), both advantages normalised per
    minibatch: --update-epochs epochs of --num-minibatches minibatches of the clipped surrogate and the two
    value losses, stopping after an epoch whose approx-KL passes --target-kl. batch: the flat obs, act, logp
    (of pi_old), adv, cost_adv, ret and cost_ret of advantages_batch. Returns the mean statistics."""
    n = batch["obs"].shape[0]
    stats = []
    for epoch in range(args.update_epochs):
        for idx in torch.randperm(n, device=batch["obs"].device).split(n // args.num_minibatches):
            obs, adv = batch["obs"][idx], batch["adv"][idx]
            new_logp, entropy = actor.log_prob_entropy(obs, batch["act"][idx])
            log_ratio = new_logp - batch["logp"][idx]
            ratio = log_ratio.exp()
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            cost_adv = batch["cost_adv"][idx]
            cost_adv = (cost_adv - cost_adv.mean()) / (cost_adv.std() + 1e-8)
            adv = (adv - lam * cost_adv) / (1.0 + lam)  # reward up, cost down, weighed by lambda
            policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef) * adv).mean()
            value_loss = 0.5 * (critic(obs) - batch["ret"][idx]).pow(2).mean()
            cost_value_loss = 0.5 * (cost_critic(obs) - batch["cost_ret"][idx]).pow(2).mean()
            loss = policy_loss - args.ent_coef * entropy + args.vf_coef * (value_loss + cost_value_loss)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, args.max_grad_norm, foreach=True)
            optimizer.step()
            with torch.no_grad():
                approx_kl = ((ratio - 1) - log_ratio).mean()  # the k3 estimator of KL(old || new)
                clipfrac = ((ratio - 1).abs() > args.clip_coef).float().mean()
            losses = [policy_loss.detach(), value_loss.detach(), cost_value_loss.detach(), entropy.detach()]
            stats.append(torch.stack([*losses, approx_kl, clipfrac]))
        if args.target_kl is not None and approx_kl.item() > args.target_kl:
            break
    names = ("policy_loss", "value_loss", "cost_value_loss", "entropy", "approx_kl", "clipfrac")
    return {**dict(zip(names, torch.stack(stats).mean(0).tolist())), "epochs": epoch + 1}


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


def main(args: Args) -> dict:
    args = env_layout(repeat_layout(args))
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
    params = list(actor.parameters()) + list(critic.parameters()) + list(cost_critic.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, eps=1e-5, fused=True)
    obs_rms = RunningMeanStd(obs_dim)
    gains = (args.pid_kp, args.pid_ki, args.pid_kd, args.pid_error_bound)  # aimed at the set point, under d
    multiplier = PIDLagrangeMultiplier(args.pid_setpoint * args.cost_limit, args.lagrangian_multiplier_init, *gains)

    T, N = args.num_steps, args.num_envs
    num_updates = args.total_timesteps // (T * N * k)
    # Rollout storage stays in numpy (cheap per-step writes) and goes to torch once per rollout.
    obs_buf = np.zeros((T + 1, N, obs_dim), dtype=np.float32)  # normalised, as the policy saw them; row T: the next obs
    act_buf = np.zeros((T, N, act_dim))  # float64, MuJoCo's own dtype: float32 would be converted at every step
    rew_buf, cost_buf, done_buf = (np.zeros((T, N), dtype=np.float32) for _ in range(3))

    raw_obs, _ = envs.reset(seed=args.seed)
    obs_rms.update(raw_obs)
    obs_buf[0] = obs_rms.normalize(raw_obs)
    ep_return, ep_cost, ep_len = np.zeros(N), np.zeros(N), np.zeros(N, dtype=int)
    last_episodes = Episode(np.nan, np.nan, np.nan)  # the means of the latest finished episodes
    cost_window = CostWindow(args.cost_window)
    global_step = 0
    cumulative_cost = 0.0
    start_time = time.time()
    rng = np.random.default_rng(args.seed)

    for update in range(1, num_updates + 1):
        lr = args.learning_rate * (1.0 - (update - 1.0) / num_updates) if args.anneal_lr else args.learning_rate
        optimizer.param_groups[0]["lr"] = lr
        finished = []  # the Episodes that end in this rollout
        final_obs = []  # (t, env, normalised final observation) of the episodes truncated by the time limit

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
            obs_buf[t + 1] = obs_rms.normalize(raw_obs)
            if done.any():
                for i in np.flatnonzero(truncated & ~terminated):  # time limit: the episode could go on
                    final_obs.append((t, i, obs_rms.normalize(info["final_observation"][i])))
                for i in np.flatnonzero(done):
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

        # The multiplier moves first, on J_c over the last --cost-window finished episodes (kept while none ends).
        if finished:
            last_episodes = Episode(*np.mean(finished, axis=0))
            multiplier.update(cost_window.add(episode.cost for episode in finished))
        lam = multiplier.value
        if not np.isfinite(lam):
            raise SystemExit(f"error: non-finite lagrange_multiplier at step {global_step}; stopping")
        obs_buf[0] = obs_buf[T]  # the next rollout starts where this one stopped

        stats = ppo_update(actor, critic, cost_critic, optimizer, params, batch, lam, args)
        for name in ("policy_loss", "value_loss", "cost_value_loss"):
            if not np.isfinite(stats[name]):
                raise SystemExit(f"error: non-finite {name} at step {global_step}; stopping")

        logger.log(
            {
                **episode_columns(global_step, last_episodes, finished, cumulative_cost, start_time),
                "lagrange_multiplier": lam,
                "cost_estimate": cost_window.mean,
                "cost_estimate_episodes": len(cost_window.costs),
                "pid_p": multiplier.p,
                "pid_i": multiplier.integral,
                "pid_d": multiplier.d,
                "learning_rate": lr,
                **stats,
                "time_rollout": update_start - rollout_start,
                "time_update": time.time() - update_start,
            }
        )

    return finish_run(args, envs, actor, obs_rms, device, run_dir, logger, start_time)


# ----------------------------------------------------------------------------------------------------------------
# Plumbing: the same in every script (tests/test_scripts.py checks it) but check_args, this script's make_envs and
# evaluate (each action held for --action-repeat env steps), and cvpo.py's env_layout, save_checkpoint and
# load_checkpoint: argument checks, env layout, observation normalisation, vector envs, evaluation, checkpoints, logs.
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
    positive = ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "cost_window")
    for name in (*positive, "action_repeat"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not args.learning_rate > 0 or not np.isfinite(args.learning_rate):
        raise SystemExit(f"error: --learning-rate must be a positive number, got {args.learning_rate}")
    if not args.cost_limit >= 0:
        raise SystemExit(f"error: --cost-limit must be >= 0, got {args.cost_limit}")
    if not 0 < args.pid_setpoint <= 1:
        raise SystemExit(f"error: --pid-setpoint must be in (0, 1] (a fraction of the limit), got {args.pid_setpoint}")
    if args.pid_error_bound is not None and not args.pid_error_bound > 0:
        raise SystemExit(f"error: --pid-error-bound must be > 0 (inf: no clip), got {args.pid_error_bound}")
    if not args.lagrangian_multiplier_init >= 0:
        raise SystemExit(f"error: --lagrangian-multiplier-init must be >= 0, got {args.lagrangian_multiplier_init}")
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
