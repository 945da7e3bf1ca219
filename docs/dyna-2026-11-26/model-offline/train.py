import os
import sys, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import dyna_cppo as D
torch.set_num_threads(1)
data = dict(np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.npz")))
R = data["obs"].shape[0]
rolls = [{k: data[k][i] for k in data} for i in range(R)]
variant = sys.argv[1]
K = 5
def loss_fn(model, obs, act, next_obs, rew, cost, rs):
    if variant == "new":
        return D.multi_step_loss(model, obs, act, next_obs, rew, cost)[0]
    s_hat, loss = obs, 0.0
    for k in range(act.shape[1]):
        s_hat, r_hat, c_logit = model(s_hat, act[:, k])
        err = (s_hat - next_obs[:, k]).norm(dim=-1).mean()
        if variant == "v0":
            rl = F.mse_loss(r_hat, rew[:, k])
        else:
            rl = F.mse_loss(r_hat, (rew[:, k] - rs[0]) / rs[1])
        if variant == "v2":
            rl = F.mse_loss(r_hat, ((rew[:, k] - rs[0]) / rs[1]).clamp(-5, 5))
        loss = loss + err + rl + F.binary_cross_entropy_with_logits(c_logit, cost[:, k].clamp(0, 1))
    return loss
rms = D.RunningMeanStd(data["obs"].shape[-1])
g = torch.Generator().manual_seed(2)
model = D.DynamicsModel(data["obs"].shape[-1], 2, 200, g)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
test = rolls[-1]
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
for it in range(R - 1):
    rms.update(rolls[it]["obs"].reshape(-1, rolls[it]["obs"].shape[-1]))
    replay = rolls[: it + 1]
    rew_all = np.concatenate([r["rew"].ravel() for r in replay])
    rd = rew_all[np.abs(rew_all) < 0.5] if variant == "v2" else rew_all
    rs = (float(rd.mean()), float(rd.std() + 1e-8))
    if variant == "new":
        model.fit_reward_scale(rew_all)
    starts = [D.window_starts(r["done"], K) for r in replay]
    index = np.concatenate([np.column_stack([np.full(len(s), j), s]) for j, s in enumerate(starts)])
    for _ in range(epochs):
        order = torch.randperm(len(index), generator=g).numpy()
        for chunk in np.array_split(order, max(1, len(order) // 1000)):
            parts = [D.windows(replay[j], index[chunk][index[chunk][:, 0] == j][:, 1:], K, rms, "cpu")
                     for j in np.unique(index[chunk][:, 0])]
            loss = loss_fn(model, *(torch.cat(x) for x in zip(*parts)), rs)
            opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0); opt.step()
    # evaluate on the held-out rollout
    with torch.no_grad():
        o, a, no, r, c = D.windows(test, D.window_starts(test["done"], K), K, rms, "cpu")
        s_hat, r_hat, c_logit = model(o, a[:, 0])
        if variant not in ("v0", "new"):
            r_hat = rs[0] + rs[1] * r_hat
        dense = r[:, 0].abs() < 0.5
        rerr = (r_hat - r[:, 0])[dense].pow(2).mean().item(); rbase = (r[:, 0] - rs[0])[dense].pow(2).mean().item()
        p = torch.sigmoid(c_logit); y = c[:, 0].clamp(0, 1)
        brier = (p - y).pow(2).mean().item(); base_rate = float(np.concatenate([x["cost"].ravel() for x in replay]).clip(0,1).mean())
        bbase = (base_rate - y).pow(2).mean().item()
        zero = (o - no[:, 0]).norm(dim=-1).mean().item(); merr = (s_hat - no[:, 0]).norm(dim=-1).mean().item()
    print(f"{variant} it {it} state skill {1-merr/zero:.3f} reward skill {1-rerr/rbase:.3f} (mse {rerr:.2e} base {rbase:.2e}) "
          f"cost brier skill {1-brier/bbase:.3f} mean p {p.mean():.3f} rate {y.mean():.3f}", flush=True)
