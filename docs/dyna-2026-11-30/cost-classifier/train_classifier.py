"""Issue 31, offline: which learned head classifies cost > 0 on SafetyPointGoal1-v0? Trains small MLPs on
rollouts 0..6 of data.npz (collect.py) and scores them on rollout 7, never trained on. Inputs are normalised
as dyna_cppo.py does (its RunningMeanStd over the training rollouts' observations, clip 10):
  next    the true next observation s'
  obsact  (s, a): what a head on the dynamics model's own hidden layer could see
  pred    the dynamics model's one-step prediction s_hat (a dyna_cppo.DynamicsModel trained as in a run, 2 epochs
          per iteration on a growing buffer; cached in model.pt), for training and scoring
  next>pred  trained on the true s', scored on s_hat: a separate head as imagination would use it
  obsact>pred  trained on (s, a), scored on (s_hat_t, a_t) (s_hat_t predicted from s_{t-1}): imagination's step 2
  obsact+pred  the same, trained on the real (s, a) and the predicted (s_hat_t, a_t) together
--pool 1 adds, per observation group of the env (its observation-space dict: every sensor, not picked by hand),
the max of the group's raw values (standardised); --pool 2 keeps those maxima (and the action) only. --arch sets
learns the pool: per group an encoder shared by its elements and a max over them (SetsNet).
Metrics on rollout 7: Brier skill = 1 - Brier / (rate (1 - rate)) with the rollout's own rate (dyna_cppo.py's
model/cost_skill), precision and recall of p > 0.5, the skill of that 0/1 prediction (thr_skill), AUC. For
bcew (pos_weight w = negatives / positives) also the skill after removing the known prior shift, logit - log w
("cal"). Mean (and min..max) over seeds."""
import argparse
import os
import sys
import time
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", ".."))
import dyna_cppo as D  # noqa: E402  (read only: RunningMeanStd, DynamicsModel, train_model, score_model)

p = argparse.ArgumentParser()
p.add_argument("--losses", default="mse,bce,bcew,focal")
p.add_argument("--inputs", default="next")
p.add_argument("--pool", default="0", help="comma list: 0 the input alone, 1 with the group-max features, 2 those only")
p.add_argument("--arch", default="mlp", choices=["mlp", "sets"], help="sets: learned per-group max-pool (SetsNet)")
p.add_argument("--ntrain", type=int, default=7, help="train on rollouts 0 .. ntrain-1")
p.add_argument("--wd", type=float, default=0.0, help="AdamW weight decay")
p.add_argument("--hidden", type=int, default=64)
p.add_argument("--act", default="tanh", choices=["tanh", "relu", "silu"])
p.add_argument("--epochs", default="2,5,10,20", help="checkpoints scored (epochs of one training run)")
p.add_argument("--seeds", default="0,1,2")
p.add_argument("--batch", type=int, default=256)
p.add_argument("--lr", type=float, default=1e-3)
args = p.parse_args()
t0 = time.process_time()

data = dict(np.load(os.path.join(HERE, "data.npz")))
rolls = [{k: data[k][i] for k in data} for i in range(data["obs"].shape[0])]  # each [T, 1, ...]
train, test = rolls[: args.ntrain], rolls[-1]
flat = lambda key, rs: np.concatenate([r[key][:, 0] for r in rs])  # [T, 1, ...] -> [sum T, ...]
rms = D.RunningMeanStd(data["obs"].shape[-1])
for r in train:
    rms.update(r["obs"].reshape(-1, data["obs"].shape[-1]))
y_tr, y_te = (flat("cost", train) > 0).astype(np.float32), (flat("cost", [test]) > 0).astype(np.float32)

# the env's observation groups, in the flattened order (every group, none picked by hand)
import safety_gymnasium  # noqa: E402

env = safety_gymnasium.make("SafetyPointGoal1-v0")
groups, start = {}, 0
for name, space in env.unwrapped.task.obs_info.obs_space_dict.items():
    groups[name] = (start, start + int(np.prod(space.shape)))
    start += int(np.prod(space.shape))
env.close()


def predicted_next():
    """One-step predictions s_hat of a DynamicsModel trained as in a run (cached): train and test arrays."""
    path = os.path.join(HERE, "model.pt")
    dim = data["obs"].shape[-1]
    model = D.DynamicsModel(dim, 2, 200, torch.Generator().manual_seed(2))
    if os.path.exists(path):
        model.load_state_dict(torch.load(path))
    else:
        g = torch.Generator().manual_seed(2)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        a = types.SimpleNamespace(model_epochs=2, multi_step_k=5, model_batch_size=1000, model_step_weight=1.0)
        step_rms = D.RunningMeanStd(dim)
        for it in range(len(train)):
            step_rms.update(train[it]["obs"].reshape(-1, dim))
            D.train_model(model, opt, train[: it + 1], step_rms, a, g, "cpu")
        torch.save(model.state_dict(), path)
    stats = D.score_model(model, train, test, rms, 5, "cpu")
    print("dynamics model on rollout 7:", {k: round(v, 3) for k, v in stats.items() if "error" not in k})
    with torch.no_grad():
        out = [model(torch.tensor(rms.normalize(flat("obs", rs)), dtype=torch.float32),
                     torch.tensor(flat("act", rs), dtype=torch.float32))[0].numpy() for rs in (train, [test])]
    return out


def inputs(kind: str, pool: int):
    """(train, test) float32 tensors of one input kind. pool 0: the normalised state (and action); 1: plus the
    standardised max of each group's raw values; 2: those maxima (and action) only. --arch sets: the raw state
    standardised per group (for the net's per-group encoders) first, then the action (and the state, pool 1)."""
    sets, y, y_train = [train, [test]], y_te, y_tr
    extra = [flat("act", rs) if kind == "obsact" else np.zeros((len(flat("cost", rs)), 0)) for rs in sets]
    if kind in ("obsact>pred", "obsact+pred"):  # (s_hat_t = F(s_{t-1}, a_{t-1}), a_t) -> cost of step t
        pred = predicted_next()
        keep = [~flat("done", rs)[:-1].astype(bool) for rs in sets]  # t - 1 and t in one episode
        extra = [flat("act", train), flat("act", [test])[1:][keep[1]]]
        states = [rms.normalize(flat("obs", train)), pred[1][:-1][keep[1]]]
        y = y_te[1:][keep[1]]
        if kind == "obsact+pred":  # trained on the real and the predicted (s, a) both
            extra[0] = np.concatenate([extra[0], flat("act", train)[1:][keep[0]]])
            states[0] = np.concatenate([states[0], pred[0][:-1][keep[0]]])
            y_train = np.concatenate([y_tr, y_tr[1:][keep[0]]])
    elif kind in ("next", "obsact"):
        states = [rms.normalize(flat("next_obs" if kind == "next" else "obs", rs)) for rs in sets]
    else:
        pred = predicted_next()
        states = [rms.normalize(flat("next_obs", train)), pred[1]] if kind == "next>pred" else pred
    if pool == 0 and args.arch == "mlp":
        xs = [np.concatenate([s, e], 1) for s, e in zip(states, extra)]
    else:
        raw = [s * np.sqrt(rms.var + rms.eps) + rms.mean for s in states]
        if args.arch == "mlp":
            pooled = [np.stack([r[:, a:b].max(1) for a, b in groups.values() if b - a > 1], 1) for r in raw]
            mu, sd = pooled[0].mean(0), pooled[0].std(0) + 1e-8
            pooled = [(q - mu) / sd for q in pooled]
        else:
            pooled = [r.copy() for r in raw]
            for a, b in groups.values():
                mu, sd = raw[0][:, a:b].mean(), raw[0][:, a:b].std() + 1e-8
                for q in pooled:
                    q[:, a:b] = (q[:, a:b] - mu) / sd
        xs = [np.concatenate([q, e] + ([s] if pool == 1 else []), 1) for q, e, s in zip(pooled, extra, states)]
    return [torch.tensor(x, dtype=torch.float32) for x in xs] + [y_train, y]


class SetsNet(nn.Module):
    """Per observation group, a small encoder shared by the group's elements (1 -> 16 -> 8) and a max over
    them; an MLP on the pooled features and the remaining inputs (action, the state for pool 1)."""

    def __init__(self, n_in: int, hidden: int, act):
        super().__init__()
        self.spans = [(a, b) for a, b in groups.values()]
        self.enc = nn.ModuleList(nn.Sequential(nn.Linear(1, 16), act(), nn.Linear(16, 8)) for _ in self.spans)
        n_state = self.spans[-1][1]
        self.head = nn.Sequential(nn.Linear(8 * len(self.spans) + n_in - n_state, hidden), act(),
                                  nn.Linear(hidden, hidden), act(), nn.Linear(hidden, 1))

    def forward(self, x):
        pooled = [enc(x[:, a:b, None]).max(1).values for enc, (a, b) in zip(self.enc, self.spans)]
        return self.head(torch.cat(pooled + [x[:, self.spans[-1][1]:]], 1))


def auc(score: np.ndarray, y: np.ndarray) -> float:
    _, inv, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inv]  # average ranks of ties, 1-based
    pos, neg = y.sum(), len(y) - y.sum()
    return float((ranks[y > 0].sum() - pos * (pos + 1) / 2) / (pos * neg))


def metrics(prob: np.ndarray, score: np.ndarray, y: np.ndarray) -> dict:
    rate = y.mean()
    pred, actual = prob > 0.5, y > 0
    return {
        "skill": 1.0 - np.mean((prob - y) ** 2) / (rate * (1.0 - rate)),
        "prec": (pred & actual).sum() / max(1, pred.sum()),
        "rec": (pred & actual).sum() / max(1, actual.sum()),
        "thr_skill": 1.0 - np.mean(pred != actual) / (rate * (1.0 - rate)),  # the 0/1 prediction p > 0.5
        "auc": auc(score, y),
    }


def run(loss_name: str, x_tr, x_te, y_tr, y_te, seed: int, checkpoints: list) -> dict:
    torch.manual_seed(seed)
    act = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU}[args.act]
    h = args.hidden
    if args.arch == "sets":
        net = SetsNet(x_tr.shape[1], h, act)
    else:
        net = nn.Sequential(nn.Linear(x_tr.shape[1], h), act(), nn.Linear(h, h), act(), nn.Linear(h, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.wd)
    yt = torch.tensor(y_tr)
    w = float((1 - y_tr).sum() / y_tr.sum())  # pos_weight = negatives / positives
    out = {}
    for ep in range(1, max(checkpoints) + 1):
        for b in torch.randperm(len(yt)).split(args.batch):
            z = net(x_tr[b]).squeeze(-1)
            if loss_name == "mse":
                loss = F.mse_loss(z, yt[b])
            elif loss_name == "bce":
                loss = F.binary_cross_entropy_with_logits(z, yt[b])
            elif loss_name == "bcew":
                loss = F.binary_cross_entropy_with_logits(z, yt[b], pos_weight=torch.tensor(w))
            else:  # focal, gamma 2: -(1 - p_t)^2 log p_t
                logp_t = -F.binary_cross_entropy_with_logits(z, yt[b], reduction="none")
                loss = (-((1 - logp_t.exp()) ** 2) * logp_t).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if ep in checkpoints:
            with torch.no_grad():
                z = net(x_te).squeeze(-1).numpy().astype(np.float64)
            prob = np.clip(z, 0, 1) if loss_name == "mse" else 1 / (1 + np.exp(-z))
            m = metrics(prob, z, y_te)
            if loss_name == "bcew":
                cal = metrics(1 / (1 + np.exp(-(z - np.log(w)))), z, y_te)
                m.update({"cal_skill": cal["skill"], "cal_prec": cal["prec"], "cal_rec": cal["rec"]})
            z_tr = net(x_tr).squeeze(-1).detach().numpy().astype(np.float64)
            m_tr = metrics(np.clip(z_tr, 0, 1) if loss_name == "mse" else 1 / (1 + np.exp(-z_tr)), z_tr, y_tr)
            m.update({"train_skill": m_tr["skill"], "train_auc": m_tr["auc"]})
            out[ep] = m
    return out


# the reference: the max of the hazard-lidar group, threshold fitted on the training rollouts (fewest errors)
a, b = groups["hazards_lidar"]
m_tr, m_te = flat("next_obs", train)[:, a:b].max(1), flat("next_obs", [test])[:, a:b].max(1)
cand = np.unique(m_tr)
errors = [((m_tr > t) != (y_tr > 0)).sum() for t in cand[::-1][:5000]]  # cost is rare: look at the top values
thr = cand[::-1][:5000][int(np.argmin(errors))]
ref = metrics((m_te > thr).astype(np.float64), m_te, y_te)
print(f"rate train {y_tr.mean():.4f} test {y_te.mean():.4f}; pos_weight {(1 - y_tr).sum() / y_tr.sum():.1f}")
print(f"lidar-max rule (threshold {thr:.4f} fitted on rollouts 0..{args.ntrain - 1}): " + " ".join(f"{k} {v:.3f}" for k, v in ref.items()))
checkpoints = [int(e) for e in args.epochs.split(",")]
seeds = [int(s) for s in args.seeds.split(",")]
print(f"{args.arch} {args.hidden}-{args.hidden} {args.act}, batch {args.batch}, lr {args.lr}, weight decay {args.wd}, seeds {seeds}")
for kind in args.inputs.split(","):
    for pool in [int(v) for v in args.pool.split(",")]:
        x_tr, x_te, y_train, y_kind = inputs(kind, pool)
        for loss_name in args.losses.split(","):
            res = [run(loss_name, x_tr, x_te, y_train, y_kind, s, checkpoints) for s in seeds]
            for ep in checkpoints:
                cells = []
                for k in res[0][ep]:
                    v = np.array([r[ep][k] for r in res])
                    cells.append(f"{k} {v.mean():.3f} ({v.min():.3f}..{v.max():.3f})")
                print(f"{kind:9s} pool {int(pool)} {loss_name:5s} ep {ep:3d}: " + "  ".join(cells), flush=True)
print(f"cpu {time.process_time() - t0:.0f} s")
