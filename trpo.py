"""TRPO: Trust Region Policy Optimization on Safety-Gymnasium, in one file.

TRPO (Schulman et al. 2015, arXiv:1502.05477) with GAE (arXiv:1506.02438). Each update maximises the
surrogate L(theta) = E[pi_theta(a|s) / pi_old(a|s) * A] subject to mean KL(pi_old || pi_theta) <= delta:
the natural-gradient direction x = F^-1 g comes from conjugate gradient with Fisher-vector products (double
backprop of the mean KL), the step is scaled to the KL radius, sqrt(2 delta / x^T F x), and a backtracking
line search accepts the first step that improves the surrogate within the radius (else the policy is kept).
The critic is fitted by Adam. Like ppo.py it ignores cost in the update and records it.

Usage: python trpo.py --env-id SafetyHalfCheetahVelocity-v1 --total-timesteps 1000000 --save-model
       python trpo.py --eval-checkpoint runs/<run>/trpo.pt   # evaluate a saved policy, both modes
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
    """the episodic cost limit d (TRPO ignores it; it is recorded in config.json for comparisons)"""
    save_model: bool = False
    """if toggled, save the policy and the observation-normalisation statistics to the run folder"""
    eval_episodes: int = 10
    """episodes of each final evaluation, stochastic and deterministic (0 skips it)"""
    eval_checkpoint: Optional[str] = None
    """evaluate this `--save-model` checkpoint on the env it was trained on (both modes, --eval-episodes each,
    seeds from --seed as at the end of training) and exit: nothing is trained"""

    num_steps: Optional[int] = None
    """steps per environment per rollout (None: 8000 // num_envs, a batch of 8 episodes of 1000 steps)"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.95
    """the GAE lambda"""
    max_kl: float = 0.01
    """the trust-region radius delta: mean KL(pi_old || pi_new) of an accepted step is at most this"""
    cg_iters: int = 15
    """conjugate-gradient iterations for x = F^-1 g"""
    cg_damping: float = 0.1
    """damping added to the Fisher matrix (F + damping * I)"""
    line_search_steps: int = 15
    """backtracking line-search steps before the old policy is kept"""
    line_search_decay: float = 0.8
    """the step shrinks by this factor at each line-search step"""
    learning_rate: float = 1e-3
    """the Adam learning rate of the critic"""
    num_minibatches: int = 4
    """critic minibatches per epoch (few and large: on a CPU an Adam step costs about the same for 64 or 2000
    samples)"""
    update_epochs: int = 10
    """the number of critic passes over each rollout"""
    max_grad_norm: float = 0.5
    """the maximum norm of the critic's gradient"""


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


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q) -> torch.Tensor:
    """KL(p || q) between diagonal Gaussians, summed over action dimensions (one value per state)."""
    var_p, var_q = (2 * log_std_p).exp(), (2 * log_std_q).exp()
    return (log_std_q - log_std_p + (var_p + (mean_p - mean_q).pow(2)) / (2 * var_q) - 0.5).sum(-1)


def conjugate_gradient(Avp, b: torch.Tensor, iters: int = 10, residual_tol: float = 1e-10) -> torch.Tensor:
    """Solve A x = b for symmetric positive-definite A, given only the product v -> A v."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()  # residual b - A x and search direction, with x = 0
    rr = r @ r
    for _ in range(iters):
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        if rr_new < residual_tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def write_params(flat: torch.Tensor, params: list) -> None:
    """Copy a flat vector into the parameters' own memory. (nn.utils.vector_to_parameters would make them views of
    the vector, and on some CPUs a matmul on such a view differs in the last bits from one on the reloaded
    checkpoint, so the saved policy would not evaluate as the trained one did.)"""
    offset = 0
    for p in params:
        p.data.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def trpo_step(
    actor: "Actor",
    obs,
    actions,
    advantages,
    old_logp,
    max_kl: float,
    cg_iters: int = 15,
    damping: float = 0.1,
    ls_steps: int = 15,
    ls_decay: float = 0.8,
) -> dict:
    """One TRPO policy update on a batch. The actor moves only to a point whose mean KL from the old policy is
    at most max_kl and whose surrogate E[ratio * A] beats the old one; otherwise it is left as it was."""
    params = list(actor.parameters())
    with torch.no_grad():
        old_mean, old_log_std = actor.mean(obs), actor.log_std.clone()

    def surrogate() -> torch.Tensor:
        return ((actor.log_prob(obs, actions) - old_logp).exp() * advantages).mean()

    def mean_kl() -> torch.Tensor:
        return gaussian_kl(old_mean, old_log_std, actor.mean(obs), actor.log_std).mean()

    def fisher_vector_product(v: torch.Tensor) -> torch.Tensor:
        grad_kl = torch.autograd.grad(mean_kl(), params, create_graph=True)
        grad_kl_v = nn.utils.parameters_to_vector(grad_kl) @ v
        return nn.utils.parameters_to_vector(torch.autograd.grad(grad_kl_v, params)) + damping * v

    loss_old = surrogate()
    g = nn.utils.parameters_to_vector(torch.autograd.grad(loss_old, params))
    x = conjugate_gradient(fisher_vector_product, g, cg_iters)  # natural-gradient direction F^-1 g
    full_step = torch.sqrt(2 * max_kl / (x @ fisher_vector_product(x) + 1e-12)) * x
    old_params = nn.utils.parameters_to_vector(params).detach()
    with torch.no_grad():
        for i in range(ls_steps):
            write_params(old_params + ls_decay**i * full_step, params)
            improvement = surrogate() - loss_old
            kl = mean_kl()
            if kl <= max_kl and improvement > 0:
                return {
                    "kl": kl.item(),
                    "line_search_steps": i + 1,
                    "surrogate_improvement": improvement.item(),
                    "surrogate": loss_old.item(),
                }
        write_params(old_params, params)  # no acceptable step: keep the old policy
    return {"kl": 0.0, "line_search_steps": 0, "surrogate_improvement": 0.0, "surrogate": loss_old.item()}


def main(args: Args) -> dict:
    args = env_layout(args)
    check_args(args)
    if args.eval_checkpoint:
        return evaluate_checkpoint(args)
    envs, device, run_dir, logger = start_run(args)

    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    low, high = envs.single_action_space.low, envs.single_action_space.high
    actor, critic = Actor(obs_dim, act_dim).to(device), Critic(obs_dim).to(device)
    optimizer = torch.optim.Adam(critic.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    obs_rms = RunningMeanStd(obs_dim)

    T, N = args.num_steps, args.num_envs
    batch_size = T * N
    minibatch_size = batch_size // args.num_minibatches
    num_updates = args.total_timesteps // batch_size
    # Rollout storage stays in numpy (cheap per-step writes) and goes to torch once per rollout.
    obs_buf = np.zeros((T + 1, N, obs_dim), dtype=np.float32)  # normalised, as the policy saw them; row T: the next obs
    act_buf = np.zeros((T, N, act_dim))  # float64, MuJoCo's own dtype: float32 would be converted at every step
    rew_buf, done_buf = (np.zeros((T, N), dtype=np.float32) for _ in range(2))

    raw_obs, _ = envs.reset(seed=args.seed)
    obs_rms.update(raw_obs)
    obs_buf[0] = obs_rms.normalize(raw_obs)
    ep_return, ep_cost, ep_len = np.zeros(N), np.zeros(N), np.zeros(N, dtype=int)
    last_episodes = Episode(np.nan, np.nan, np.nan)  # the means of the latest finished episodes
    global_step = 0
    cumulative_cost = 0.0
    start_time = time.time()
    rng = np.random.default_rng(args.seed)

    for update in range(1, num_updates + 1):
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
            global_step += N
            cumulative_cost += cost.sum()
            ep_return, ep_cost, ep_len = ep_return + reward, ep_cost + cost, ep_len + 1
            done = terminated | truncated
            rew_buf[t], done_buf[t] = reward, done
            obs_rms.update(raw_obs)
            obs_buf[t + 1] = obs_rms.normalize(raw_obs)
            if done.any():
                for i in np.flatnonzero(truncated & ~terminated):  # time limit: the episode could go on
                    final_obs.append((t, i, obs_rms.normalize(info["final_observation"][i])))
                for i in np.flatnonzero(done):
                    finished.append(Episode(ep_return[i], ep_cost[i], ep_len[i]))
                ep_return[done], ep_cost[done], ep_len[done] = 0.0, 0.0, 0

        update_start = time.time()
        # Log-probs and values in one batch. The next value is V(s_{t+1}) inside an episode,
        # V(final obs) on truncation (the episode could go on), 0 on termination.
        observations, actions, rewards, dones = (
            torch.tensor(b, dtype=torch.float32, device=device) for b in (obs_buf, act_buf, rew_buf, done_buf)
        )
        with torch.no_grad():
            old_logp = gaussian_log_prob(actions, actor.mean(observations[:-1]), actor.log_std)  # log pi_old(a|s)
            values = critic(observations)
            next_values = torch.where(dones.bool(), torch.zeros((), device=device), values[1:])
            if final_obs:
                t_idx, env_idx, final_x = zip(*final_obs)
                final_x = torch.tensor(np.stack(final_x), dtype=torch.float32, device=device)
                next_values[list(t_idx), list(env_idx)] = critic(final_x)
        advantages, returns = compute_gae(rewards, values[:-1], next_values, dones, args.gamma, args.gae_lambda)
        obs_buf[0] = obs_buf[T]  # the next rollout starts where this one stopped

        # TRPO policy step on the whole batch (advantages normalised), then the critic by Adam on minibatches.
        b_obs, b_act = observations[:-1].reshape(-1, obs_dim), actions.reshape(-1, act_dim)
        b_logp, b_adv, b_ret = old_logp.reshape(-1), advantages.reshape(-1), returns.reshape(-1)
        b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
        step = trpo_step(
            actor,
            b_obs,
            b_act,
            b_adv,
            b_logp,
            args.max_kl,
            args.cg_iters,
            args.cg_damping,
            args.line_search_steps,
            args.line_search_decay,
        )
        value_losses = []
        for epoch in range(args.update_epochs):
            for idx in torch.randperm(batch_size, device=device).split(minibatch_size):
                value_loss = 0.5 * (critic(b_obs[idx]) - b_ret[idx]).pow(2).mean()
                optimizer.zero_grad()
                value_loss.backward()
                nn.utils.clip_grad_norm_(critic.parameters(), args.max_grad_norm, foreach=True)
                optimizer.step()
                value_losses.append(value_loss.detach())
        value_loss = torch.stack(value_losses).mean().item()
        for name, value in (("surrogate", step["surrogate"]), ("value_loss", value_loss)):
            if not np.isfinite(value):
                raise SystemExit(f"error: non-finite {name} at step {global_step}; stopping")

        if finished:
            last_episodes = Episode(*np.mean(finished, axis=0))
        logger.log(
            {
                **episode_columns(global_step, last_episodes, finished, cumulative_cost, start_time),
                "value_loss": value_loss,
                "entropy": (0.5 + 0.5 * np.log(2 * np.pi) + actor.log_std).sum().item(),
                **step,
                "time_rollout": update_start - rollout_start,
                "time_update": time.time() - update_start,
            }
        )

    return finish_run(args, envs, actor, obs_rms, device, run_dir, logger, start_time)


# ----------------------------------------------------------------------------------------------------------------
# Plumbing: the same in every script of this repository (tests/test_scripts.py checks it), except check_args,
# which checks this script's own arguments (cvpo.py also has its own env_layout, save_checkpoint, load_checkpoint):
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
    for name in (
        "total_timesteps",
        "num_envs",
        "num_steps",
        "num_minibatches",
        "update_epochs",
        "cg_iters",
        "line_search_steps",
    ):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("learning_rate", "max_kl"):
        if not getattr(args, name) > 0 or not np.isfinite(getattr(args, name)):
            raise SystemExit(f"error: --{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")
    if not 0 < args.line_search_decay < 1:
        raise SystemExit(f"error: --line-search-decay must be in (0, 1), got {args.line_search_decay}")
    if args.eval_episodes < 0:
        raise SystemExit(f"error: --eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.total_timesteps < args.num_envs * args.num_steps:
        raise SystemExit(
            f"error: --total-timesteps {args.total_timesteps} is smaller than one rollout "
            f"(num_envs * num_steps = {args.num_envs * args.num_steps})"
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
    envs = safety_gymnasium.vector.make(args.env_id, num_envs=args.num_envs, asynchronous=asynchronous)
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
            obs, reward, cost, terminated, truncated, _ = env.step(action)
            ep_return, ep_cost = ep_return + reward, ep_cost + cost
            done = terminated or truncated
            if video_path and episode == 0:
                frames.append(env.render())
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
