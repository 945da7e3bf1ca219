"""CVPO: Constrained Variational Policy Optimization, off-policy EM for safe RL, on Safety-Gymnasium, in one file.

Liu et al. 2022, "Constrained Variational Policy Optimization for Safe Reinforcement Learning", arXiv:2201.11927,
with the M-step of MPO (Abdolmaleki et al. 2018, arXiv:1806.06920). Constraint: mean episodic cost J_c <= d,
turned into a limit on the per-step cost Q value. Each update, on a batch of replayed states:
1. critics: twin reward and twin cost Q functions, critic_steps TD steps toward polyak-averaged targets;
2. E-step: sample K actions per state from the old (target) policy, then find the variational policy
   q(a|s) ∝ pi_old(a|s) exp((Q_r - lambda Q_c) / eta) whose (eta, lambda) minimise the convex dual
   g(eta, lambda) = eta eps + lambda q_lim + eta E_s log E_a exp((Q_r - lambda Q_c) / eta)  (`solve_dual`);
3. M-step: fit pi_theta to q by weighted maximum likelihood, with separate KL bounds on the change of the
   mean and of the standard deviation (Lagrange multipliers alpha_mu, alpha_sigma moved by dual ascent).
Departures (numbers in docs/cvpo.md): `--tau 0.05` (polyak 0.95, as FSRL's CVPO, where the card has 0.995: the
cost critic keeps up with the policy); `--update-every` (one update per 128 env steps on navigation tasks, 64 on
velocity tasks, for speed); `--action-repeat 8` on navigation tasks (each action held for 8 env steps, rewards and
costs summed, gamma^8 per decision); twin cost critics (the paper has one): their mean in the TD target, the higher
in the E-step (the E-step favours actions whose Q_c is underestimated); each update block runs in a background
thread while the envs step on, so the acting policy is one block behind.
Logged each row: the E-step's Q_c at the policy's own recent (s, a) (`q_c_taken`) beside the discounted cost
realised from there (`cost_to_go`), the check of the E-step's cost estimate.

Usage: python cvpo.py --env-id SafetyPointCircle1-v0 --total-timesteps 300000 --save-model
       python cvpo.py --eval-checkpoint runs/<run>/cvpo.pt   # evaluate a saved policy, both modes
"""

import copy
import csv
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
import scipy.optimize
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
    total_timesteps: int = 300_000
    """total environment steps of the experiment"""
    num_envs: Optional[int] = None
    """the number of parallel environments (None: 2 for navigation tasks, 4 for velocity tasks; see `env_layout`)"""
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

    buffer_size: int = 200_000
    """the replay buffer's capacity in transitions"""
    batch_size: int = 256
    """states per update (the E-step evaluates num_sampled_actions actions for each)"""
    learning_starts: int = 10_000
    """environment steps of uniformly random actions before the first update"""
    update_every: Optional[int] = None
    """env steps (over all envs) per update (None: 128 on navigation tasks, 64 on velocity tasks); each update is
    critic_steps TD steps, one E-step, the M-step. Lower it for sample efficiency, raise it for speed"""
    action_repeat: Optional[int] = None
    """env steps per decision: each action is held for k steps (None: 8 on navigation tasks, 1 on velocity tasks)"""
    log_every: int = 4_000
    """environment steps between rows of progress.csv (and lines on stdout)"""
    num_sampled_actions: int = 16
    """K: actions sampled per state from the old policy in the E-step (16-64 in the papers; cost grows with K)"""
    dual_constraint: float = 0.1
    """epsilon: the KL bound between the variational policy q and the old policy in the E-step"""
    kl_mean_constraint: float = 0.01
    """the M-step's bound on the KL of the mean's change"""
    kl_var_constraint: float = 1e-4
    """the M-step's bound on the KL of the standard deviation's change"""
    alpha_mean_scale: float = 1.0
    """dual-ascent step of the M-step multiplier alpha_mu"""
    alpha_var_scale: float = 100.0
    """dual-ascent step of the M-step multiplier alpha_sigma"""
    alpha_mean_max: float = 10.0
    """cap of alpha_mu"""
    alpha_var_max: float = 1000.0
    """cap of alpha_sigma"""
    critic_steps: int = 4
    """TD steps of the critics per update (cheaper than the E-step; the critics need many to track the policy)"""
    m_step_iters: int = 5
    """gradient steps of the M-step per update"""
    policy_lr: float = 3e-4
    """the Adam learning rate of the policy"""
    critic_lr: float = 1e-3
    """the Adam learning rate of the critics"""
    hidden: int = 128
    """hidden units of the two hidden layers of policy and critics (256 in the paper: about 3x slower updates)"""
    gamma: float = 0.99
    """the discount factor (reward and cost)"""
    tau: float = 0.05
    """polyak step of the target networks (critics and the old policy): target <- (1 - tau) target + tau online"""


class MLP(nn.Module):
    """in -> hidden -> hidden -> out with ReLU (the usual off-policy critic and policy body)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(in_dim, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, out_dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers  # unpacked, not sliced: a slice of a ModuleList builds a new module
        for layer in hidden:
            x = F.relu(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, last.weight, last.bias)


class Actor(nn.Module):
    """Gaussian policy, state-dependent diagonal covariance: mean inside the action box (tanh), std by softplus."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.body = MLP(obs_dim, 2 * act_dim, hidden)
        self.register_buffer("center", torch.tensor((high + low) / 2, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("action_repeat", torch.tensor(1))  # env steps per action: checkpoints and `evaluate`

    def forward(self, obs: torch.Tensor):
        mean_pre, std_pre = self.body(obs).chunk(2, dim=-1)
        return self.center + self.scale * torch.tanh(mean_pre), F.softplus(std_pre) + 1e-4

    def sample(self, obs: torch.Tensor, k: Optional[int] = None) -> torch.Tensor:
        """One action per state ([B, A]), or k per state ([k, B, A]); clipped to the action box."""
        mean, std = self(obs)
        noise = torch.randn((k,) + mean.shape if k else mean.shape, device=mean.device)
        return torch.max(torch.min(mean + std * noise, self.center + self.scale), self.center - self.scale)


class QNetwork(nn.Module):
    """Q(s, a), an MLP on [s, a] whose first layer takes s and a apart: the K actions sampled for each state in
    the E-step then share the state's part (obs [B, O] with actions [K, B, A] broadcasts to Q of shape [K, B])."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int):
        super().__init__()
        self.q, self.obs_dim = MLP(obs_dim + act_dim, 1, hidden), obs_dim

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        first, second, last = self.q.layers
        w_obs, w_act = first.weight[:, : self.obs_dim], first.weight[:, self.obs_dim :]
        x = F.relu(F.linear(obs, w_obs, first.bias) + F.linear(action, w_act))
        return F.linear(F.relu(F.linear(x, second.weight, second.bias)), last.weight, last.bias).squeeze(-1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(std)^2), summed over action dimensions."""
    return (-0.5 * ((x - mean) / std).pow(2) - std.log() - 0.5 * np.log(2 * np.pi)).sum(-1)


def per_step_cost_limit(cost_limit: float, gamma: float, episode_len: int) -> float:
    """The episodic limit d as a limit on Q_c: d spread evenly over the L steps of an episode, discounted:
    d (1 - g^L) / ((1 - g) L)."""
    return cost_limit * (1 - gamma**episode_len) / ((1 - gamma) * episode_len)


def discounted_cost_to_go(costs: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = sum_k gamma^k c_{t+k} to the end of the given costs (one episode): what Q_c estimates, realised."""
    out, running = np.zeros(len(costs)), 0.0
    for t in range(len(costs) - 1, -1, -1):
        running = costs[t] + gamma * running
        out[t] = running
    return out


def dual_function(x: np.ndarray, q_r: np.ndarray, q_c: np.ndarray, eps_kl: float, q_limit: float):
    """g(eta, lambda) of the E-step and its gradient; q_r, q_c are [K, B] (K actions for each of B states).

    g = eta eps + lambda q_lim + eta mean_s log mean_a exp(z / eta), z = Q_r - lambda Q_c. Convex in (eta, lambda)."""
    eta, lam = x
    z = q_r - lam * q_c
    z_max = z.max(axis=0)
    exp_z = np.exp((z - z_max) / eta)
    sum_exp = exp_z.sum(axis=0)
    log_mean_exp = z_max / eta + np.log(sum_exp) - np.log(q_r.shape[0])  # per state, computed without overflow
    weights = exp_z / sum_exp  # q(a|s) over the K samples of each state
    g = eta * eps_kl + lam * q_limit + eta * log_mean_exp.mean()
    d_eta = eps_kl + log_mean_exp.mean() - (weights * z).sum(axis=0).mean() / eta
    d_lam = q_limit - (weights * q_c).sum(axis=0).mean()
    return g, np.array([d_eta, d_lam])


def solve_dual(q_r, q_c, eps_kl: float, q_limit: float, init=(0.1, 0.1)) -> tuple[float, float]:
    """(eta, lambda) minimising the E-step dual g over eta > 0, lambda >= 0 (SLSQP with bounds, warm-started).

    lambda stays 0 when the old policy's cost is already under q_limit after the reward-greedy reweighting, and
    grows until the reweighted expected Q_c meets q_limit otherwise (or hits its bound if no reweighting can)."""
    q_r, q_c = (np.asarray(q, dtype=np.float64) for q in (q_r, q_c))
    x0 = np.clip(np.asarray(init, dtype=np.float64), [1e-6, 0.0], [1e5, 1e5])
    result = scipy.optimize.minimize(
        dual_function,
        x0,
        args=(q_r, q_c, eps_kl, q_limit),
        jac=True,
        method="SLSQP",
        bounds=[(1e-6, 1e5), (0.0, 1e5)],
        options={"maxiter": 100, "ftol": 1e-10},
    )
    eta, lam = result.x
    return float(eta), float(lam)


def e_step_weights(q_r: torch.Tensor, q_c: torch.Tensor, eta: float, lam: float) -> torch.Tensor:
    """The variational policy on the K sampled actions of each state: softmax over K of (Q_r - lambda Q_c) / eta."""
    return torch.softmax((q_r - lam * q_c) / eta, dim=0)


def e_step_kl(weights: torch.Tensor) -> torch.Tensor:
    """Mean over states of KL(q || pi_old) on the samples: sum_a q log(K q), since the K samples are from pi_old.
    At the dual's optimum it equals the bound epsilon (unless eta sits at a bound)."""
    return (weights * (weights * weights.shape[0]).clamp_min(1e-30).log()).sum(0).mean()


def decoupled_kl(old_mean, old_std, mean, std):
    """Mean over states of KL(pi_old || pi with the new mean, old std) and KL(pi_old || pi with the old mean,
    new std), for diagonal Gaussians: the two parts of MPO's decoupled trust region."""
    kl_mean = 0.5 * ((mean - old_mean) / old_std).pow(2).sum(-1)
    ratio = (old_std / std).pow(2)
    kl_var = 0.5 * (ratio - 1.0 - ratio.log()).sum(-1)
    return kl_mean.mean(), kl_var.mean()


def m_step(actor: Actor, optimizer, obs, actions, weights, old_mean, old_std, alphas: list, args: Args) -> dict:
    """Weighted maximum likelihood of the sampled actions ([K, B, A], weights [K, B]) under pi_theta, within KL
    bounds on the mean's and the std's change from the old policy. The mean part is fitted with the old std,
    the std part with the old mean (decoupled). `alphas` = [alpha_mu, alpha_sigma] is updated in place."""
    for _ in range(args.m_step_iters):
        mean, std = actor(obs)
        log_lik = weights * (gaussian_log_prob(actions, mean, old_std) + gaussian_log_prob(actions, old_mean, std))
        log_lik = log_lik.sum(0).mean()
        kl_mean, kl_var = decoupled_kl(old_mean, old_std, mean, std)
        # Dual ascent: a multiplier rises while its KL is above the bound and falls back to 0 below it.
        mean_part = (args.alpha_mean_scale, kl_mean, args.kl_mean_constraint, args.alpha_mean_max)
        var_part = (args.alpha_var_scale, kl_var, args.kl_var_constraint, args.alpha_var_max)
        for i, (step, kl, bound, cap) in enumerate((mean_part, var_part)):
            alphas[i] = float(np.clip(alphas[i] + step * (kl.item() - bound), 0.0, cap))
        loss = -log_lik + alphas[0] * kl_mean + alphas[1] * kl_var
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {
        "policy_loss": loss.item(),
        "cvpo/kl_mean": kl_mean.item(),
        "cvpo/kl_var": kl_var.item(),
        "cvpo/alpha_mean": alphas[0],
        "cvpo/alpha_var": alphas[1],
    }


class ReplayBuffer:
    """A ring buffer of transitions (raw observations: they are normalised with the current statistics when
    sampled). `next_obs` is the true next observation, also when the episode was truncated there."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.obs, self.next_obs = np.zeros((capacity, obs_dim)), np.zeros((capacity, obs_dim))
        self.actions = np.zeros((capacity, act_dim), dtype=np.float32)
        self.rewards, self.costs, self.terminated = (np.zeros(capacity, dtype=np.float32) for _ in range(3))
        self.capacity = capacity
        self.size, self.pos = 0, 0

    def add(self, obs, actions, rewards, costs, next_obs, terminated) -> None:
        idx = (self.pos + np.arange(len(obs))) % self.capacity
        self.obs[idx], self.actions[idx], self.rewards[idx] = obs, actions, rewards
        self.costs[idx], self.next_obs[idx], self.terminated[idx] = costs, next_obs, terminated
        self.pos, self.size = (self.pos + len(obs)) % self.capacity, min(self.size + len(obs), self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int, obs_rms: "RunningMeanStd", device) -> tuple:
        idx = rng.integers(0, self.size, size=batch_size)
        as_tensor = lambda x: torch.as_tensor(x, dtype=torch.float32, device=device)
        obs, next_obs = obs_rms.normalize(self.obs[idx]), obs_rms.normalize(self.next_obs[idx])
        fields = (obs, self.actions[idx], self.rewards[idx], self.costs[idx], next_obs, self.terminated[idx])
        return tuple(as_tensor(x) for x in fields)


def target_q_values(target_critics, obs: torch.Tensor, act: torch.Tensor) -> tuple:
    """Q_r (the lower of the twin target reward critics) and Q_c (the higher of the twin target cost critics)."""
    q1_target, q2_target, qc1_target, qc2_target = target_critics
    return torch.min(q1_target(obs, act), q2_target(obs, act)), torch.max(qc1_target(obs, act), qc2_target(obs, act))


def critic_steps(critics, target_critics, target_actor, optimizer, batches: list, args: "Args") -> tuple:
    """One TD step on each replayed batch, each followed by a polyak step of the target critics. The targets
    bootstrap through the target policy and the target critics (the lower reward twin, the mean of the cost twins),
    and stop only at termination, never at the time limit. Returns the last batch's states and the last losses."""
    (q1, q2, qc1, qc2), (q1_target, q2_target, qc1_target, qc2_target) = critics, target_critics
    for obs, act, rew, cst, next_x, term in batches:
        with torch.no_grad():
            next_act = target_actor.sample(next_x)
            q_next = torch.min(q1_target(next_x, next_act), q2_target(next_x, next_act))
            qc_next = 0.5 * (qc1_target(next_x, next_act) + qc2_target(next_x, next_act))
            y_r = rew + args.gamma * (1 - term) * q_next
            y_c = cst + args.gamma * (1 - term) * qc_next
        q_r_loss = 0.5 * ((q1(obs, act) - y_r).pow(2).mean() + (q2(obs, act) - y_r).pow(2).mean())
        q_c_loss = 0.5 * ((qc1(obs, act) - y_c).pow(2).mean() + (qc2(obs, act) - y_c).pow(2).mean())
        optimizer.zero_grad()
        (q_r_loss + q_c_loss).backward()
        optimizer.step()
        for target, online in zip(target_critics, critics):
            polyak(target, online, args.tau)
    return obs, q_r_loss.item(), q_c_loss.item()


def polyak(target: nn.Module, online: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, o in zip(target.parameters(), online.parameters()):
            t.lerp_(o, tau)


def learner_thread_setup() -> None:
    """The learner thread: one torch thread, and the lowest priority (on Linux, nice is per thread), so that it
    runs on the CPU time the env workers leave idle and never delays them."""
    torch.set_num_threads(1)
    if hasattr(os, "setpriority"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


UPDATE_KEYS = """q_r_loss q_c_loss q_r q_c q_c_taken cost_to_go policy_loss cvpo/eta cvpo/lambda cvpo/e_step_kl
cvpo/kl_mean cvpo/kl_var cvpo/alpha_mean cvpo/alpha_var""".split()  # progress.csv's columns of the updates


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


def main(args: Args) -> dict:
    args = env_layout(args)
    check_args(args)
    if args.eval_checkpoint:
        return evaluate_checkpoint(args)
    envs, device, run_dir, logger = start_run(args)

    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    low, high = envs.single_action_space.low, envs.single_action_space.high
    actor = Actor(obs_dim, act_dim, args.hidden, low, high).to(device)
    k = actor.action_repeat.fill_(args.action_repeat).item()
    per_decision = dataclasses.replace(args, gamma=args.gamma**k)  # discount per decision, over k env steps
    target_actor = Actor(obs_dim, act_dim, args.hidden, low, high).to(device)  # the "old" policy of the EM steps
    critics = [QNetwork(obs_dim, act_dim, args.hidden).to(device) for _ in range(4)]  # q1, q2 (reward), qc1, qc2 (cost)
    target_critics = [QNetwork(obs_dim, act_dim, args.hidden).to(device) for _ in range(4)]
    for target, online in zip([target_actor, *target_critics], [actor, *critics]):
        target.load_state_dict(online.state_dict())
    critic_params = [p for q in critics for p in q.parameters()]
    critic_optimizer = torch.optim.Adam(critic_params, lr=args.critic_lr, fused=True)
    policy_optimizer = torch.optim.Adam(actor.parameters(), lr=args.policy_lr, fused=True)
    obs_rms = RunningMeanStd(obs_dim)
    buffer = ReplayBuffer(args.buffer_size, obs_dim, act_dim)
    episode_len = gymnasium.spec(args.env_id).max_episode_steps
    q_limit = per_step_cost_limit(args.cost_limit, per_decision.gamma, -(-episode_len // k))
    eta, lam, alphas = 0.1, 0.1, [0.0, 0.0]  # E-step dual variables (warm starts) and M-step multipliers
    K, N = args.num_sampled_actions, args.num_envs

    def update(batches: list) -> dict:
        """One update (steps 1-3 of the docstring) on critic_steps replay batches sampled beforehand."""
        nonlocal eta, lam
        # 1. Critics: one TD step per batch (see critic_steps); obs: the last batch's states.
        obs, q_r_loss, q_c_loss = critic_steps(
            critics, target_critics, target_actor, critic_optimizer, batches, per_decision
        )

        # 2. E-step on those states: K actions per state from the old policy, scored by the target critics;
        #    the dual gives (eta, lambda) and with them the weights of q on those actions.
        with torch.no_grad():
            old_mean, old_std = target_actor(obs)
            noise = torch.randn((K,) + old_mean.shape, device=device)
            sampled = (old_mean + old_std * noise).clamp(actor.center - actor.scale, actor.center + actor.scale)
            q_r, q_c = target_q_values(target_critics, obs, sampled)
        eta, lam = solve_dual(q_r.cpu().numpy(), q_c.cpu().numpy(), args.dual_constraint, q_limit, (eta, lam))
        update_stats = {"q_r_loss": q_r_loss, "q_c_loss": q_c_loss, "q_r": q_r.mean().item()}
        update_stats.update({"q_c": q_c.mean().item(), "cvpo/eta": eta, "cvpo/lambda": lam})
        for name in ("q_r_loss", "q_c_loss", "cvpo/eta", "cvpo/lambda"):
            if not np.isfinite(update_stats[name]):
                raise SystemExit(f"error: non-finite {name} at step {global_step}; stopping")
        weights = e_step_weights(q_r, q_c, eta, lam)

        # 3. M-step: weighted maximum likelihood within the decoupled KL bounds.
        m_stats = m_step(actor, policy_optimizer, obs, sampled, weights, old_mean, old_std, alphas, args)
        polyak(target_actor, actor, args.tau)
        return {**update_stats, "cvpo/e_step_kl": e_step_kl(weights).item(), **m_stats}

    # The updates run in a learner thread while the envs step on; `acting_actor` is the policy that acts, a copy of
    # `actor` taken when an update block starts. Wait for the running block before reading what it changes.
    learner, pending = ThreadPoolExecutor(1, initializer=learner_thread_setup), None
    acting_actor = copy.deepcopy(actor)

    def finish_updates() -> None:
        nonlocal pending
        if pending is not None:
            stats.extend(pending.result())  # re-raises the NaN guard's SystemExit here
            pending = None

    raw_obs, _ = envs.reset(seed=args.seed)
    obs_rms.update(raw_obs)
    ep_return, ep_cost, ep_len = np.zeros(N), np.zeros(N), np.zeros(N, dtype=int)
    finished, stats = [], []  # episodes and update statistics since the last log row
    last_episodes = Episode(np.nan, np.nan, np.nan)  # the means of the latest finished episodes
    global_step = 0
    cumulative_cost = 0.0
    start_time = time.time()
    next_log = args.log_every  # the step of the next progress row
    update_credit = 0  # env steps not yet paid for by updates (one update per update_every steps)
    rng = np.random.default_rng(args.seed)
    # The cost critic checked against what the policy paid: each env's episode so far, and from every finished one
    # a sample of (state, action, realised discounted cost-to-go), taken where the episode's end is >= `horizon`
    # decisions away (there gamma^horizon <= 0.05 of the cost-to-go is cut off, gamma per decision).
    episode_steps = [[] for _ in range(N)]
    horizon = int(np.ceil(np.log(0.05) / np.log(per_decision.gamma)))
    checks = []

    while global_step < args.total_timesteps:
        # Act: uniformly random actions until learning starts, then samples of the acting policy.
        if global_step < args.learning_starts:
            actions = rng.uniform(low, high, size=(N, act_dim))
        else:
            actions = np.clip(policy_action(acting_actor, obs_rms, raw_obs, device, rng), low, high)
        next_obs, reward, cost, terminated, truncated, info = step_envs(envs, actions, run_dir)
        real_next_obs = next_obs.copy()  # the vector env auto-resets: the true last observation is in the info
        for i in np.flatnonzero(terminated | truncated):
            real_next_obs[i] = info["final_observation"][i]
        buffer.add(raw_obs, actions, reward, cost, real_next_obs, terminated)
        obs_rms.update(next_obs)
        raw_obs_prev, raw_obs = raw_obs, next_obs
        global_step += N * k
        update_credit += N * k
        cumulative_cost += cost.sum()
        ep_return, ep_cost, ep_len = ep_return + reward, ep_cost + cost, ep_len + k  # length in env steps
        for i in range(N):
            episode_steps[i].append((raw_obs_prev[i], actions[i], cost[i]))
        for i in np.flatnonzero(terminated | truncated):
            finished.append(Episode(ep_return[i], ep_cost[i], ep_len[i]))
            o, a, c = (np.array(x) for x in zip(*episode_steps[i]))
            g = discounted_cost_to_go(c, per_decision.gamma)
            keep = np.arange(0, max(len(c) - horizon, 0), 8)
            checks.append((o[keep], a[keep], g[keep]))
            episode_steps[i] = []
            ep_return[i], ep_cost[i], ep_len[i] = 0.0, 0.0, 0

        if global_step >= args.learning_starts and update_credit >= args.update_every:
            n_updates, update_credit = divmod(update_credit, args.update_every)
            finish_updates()
            acting_actor.load_state_dict(actor.state_dict())
            sample = lambda: buffer.sample(rng, args.batch_size, obs_rms, device)
            blocks = [[sample() for _ in range(args.critic_steps)] for _ in range(n_updates)]
            pending = learner.submit(lambda todo: [update(batches) for batches in todo], blocks)

        if global_step >= next_log or global_step >= args.total_timesteps:
            next_log += args.log_every
            if finished:
                last_episodes = Episode(*np.mean(finished, axis=0))
            finish_updates()
            means = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]} if stats else {}
            if checks and stats:
                o, a, g = (np.concatenate(x) for x in zip(*checks))
                with torch.no_grad():
                    x = torch.as_tensor(obs_rms.normalize(o), dtype=torch.float32, device=device)
                    a = torch.as_tensor(a, dtype=torch.float32, device=device)
                    q_taken = torch.max(critics[2](x, a), critics[3](x, a))
                means.update(q_c_taken=q_taken.mean().item(), cost_to_go=float(g.mean()))
            checks = []
            if not np.isfinite(means.get("policy_loss", 0.0)):
                raise SystemExit(f"error: non-finite policy_loss at step {global_step}; stopping")
            logger.log(
                {
                    **episode_columns(global_step, last_episodes, finished, cumulative_cost, start_time),
                    "updates": len(stats),
                    "q_limit": q_limit,
                    **{k: means.get(k, np.nan) for k in UPDATE_KEYS},  # means over the updates since the last row
                }
            )
            finished, stats = [], []

    finish_updates()
    learner.shutdown()
    return finish_run(args, envs, actor, obs_rms, device, run_dir, logger, start_time)


# ----------------------------------------------------------------------------------------------------------------
# Plumbing: the same in every script of this repository (tests/test_scripts.py checks it), except check_args,
# which checks this script's own arguments, env_layout (no --num-steps; the task fills three arguments), and
# save_checkpoint and load_checkpoint (the squashed actor and its action box); make_envs and evaluate hold each
# action for --action-repeat env steps, as in ppo_lagrangian.py, cppo.py and dyna_cppo.py: argument checks, env
# layout, observation normalisation, vector envs, evaluation, checkpoints, the run logger. Nothing above depends on
# where these are defined: Python looks the names up when main runs.
# ----------------------------------------------------------------------------------------------------------------


def env_layout(args: Args) -> Args:
    """Fill what is left at None by task, (navigation, velocity). A navigation env is a worker process of ~500 MB
    (MuJoCo's arena, rebuilt at every reset), so navigation tasks run 2; velocity tasks step 4 in this process."""
    fill = dict(num_envs=(2, 4), action_repeat=(8, 1), update_every=(128, 64))
    task = int("Velocity" in args.env_id)
    return dataclasses.replace(args, **{k: v[task] for k, v in fill.items() if getattr(args, k) is None})


def check_args(args: Args) -> None:
    """Reject bad input with one clear line, before anything is built."""
    if args.env_id not in safe_registry:
        raise SystemExit(
            f"error: unknown env id {args.env_id!r} (not in safety_gymnasium's registry; e.g. SafetyPointGoal1-v0)"
        )
    counts = "total_timesteps num_envs buffer_size batch_size update_every log_every critic_steps m_step_iters"
    for name in (*counts.split(), "hidden", "action_repeat"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.num_sampled_actions < 2:
        raise SystemExit(f"error: --num-sampled-actions must be at least 2, got {args.num_sampled_actions}")
    positive = "policy_lr critic_lr dual_constraint kl_mean_constraint kl_var_constraint alpha_mean_scale".split()
    for name in (*positive, "alpha_var_scale", "alpha_mean_max", "alpha_var_max"):
        if not getattr(args, name) > 0 or not np.isfinite(getattr(args, name)):
            raise SystemExit(f"error: --{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")
    if not 0 < args.gamma < 1:
        raise SystemExit(f"error: --gamma must be in (0, 1), got {args.gamma}")
    if not 0 < args.tau <= 1:
        raise SystemExit(f"error: --tau must be in (0, 1], got {args.tau}")
    if not 0 <= args.cost_limit < np.inf:
        raise SystemExit(f"error: --cost-limit must be a finite number >= 0, got {args.cost_limit}")
    if args.eval_episodes < 0:
        raise SystemExit(f"error: --eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.learning_starts < args.batch_size:
        raise SystemExit(
            f"error: --learning-starts {args.learning_starts} is smaller than --batch-size "
            f"{args.batch_size}: the first update needs a full batch in the buffer"
        )
    if args.total_timesteps <= args.learning_starts:
        raise SystemExit(
            f"error: --total-timesteps {args.total_timesteps} leaves no step after --learning-starts "
            f"{args.learning_starts}: nothing would be learned"
        )
    if args.buffer_size < args.batch_size:
        raise SystemExit(f"error: --buffer-size {args.buffer_size} is smaller than --batch-size {args.batch_size}")


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
        mean, std = (y.cpu().numpy() for y in actor(x))
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
            "act_dim": actor.center.shape[0],
        },
        path,
    )


def load_checkpoint(path: str):
    """Rebuild (actor, obs_rms) from a `--save-model` file, ready for `policy_action` or `evaluate`."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt["actor"]
    actor = Actor(
        ckpt["obs_dim"],
        ckpt["act_dim"],
        ckpt["args"]["hidden"],
        (state["center"] - state["scale"]).numpy(),
        (state["center"] + state["scale"]).numpy(),
    )
    actor.load_state_dict(state)
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
