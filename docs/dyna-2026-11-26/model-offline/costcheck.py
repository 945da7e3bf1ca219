import os
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1); torch.manual_seed(0)
d = dict(np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.npz")))
X = d["next_obs"][:, :, 0].reshape(-1, d["obs"].shape[-1]); Xs = d["obs"][:, :, 0].reshape(-1, d["obs"].shape[-1])
A = d["act"][:, :, 0].reshape(-1, 2)
y = d["cost"][:, :, 0].reshape(-1).clip(0, 1); r = d["rew"][:, :, 0].reshape(-1)
n = len(y) - 4000
mu, sd = X[:n].mean(0), X[:n].std(0) + 1e-8
for name, inp in (("next_obs", (X - mu) / sd), ("obs+act", np.concatenate([(Xs - mu) / sd, A], 1)), ("obs", (Xs - mu) / sd)):
    inp = torch.tensor(inp, dtype=torch.float32); yt = torch.tensor(y)
    net = nn.Sequential(nn.Linear(inp.shape[1], 200), nn.SiLU(), nn.Linear(200, 200), nn.SiLU(), nn.Linear(200, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for ep in range(int(__import__("sys").argv[1])):
        perm = torch.randperm(n)
        for i in range(0, n, 1000):
            b = perm[i:i+1000]
            loss = F.binary_cross_entropy_with_logits(net(inp[b]).squeeze(-1), yt[b])
            opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        p = torch.sigmoid(net(inp[n:]).squeeze(-1)); yy = yt[n:]
        brier = (p - yy).pow(2).mean().item(); base = (yt[:n].mean() - yy).pow(2).mean().item()
        pred = p > 0.5
        prec = (pred & (yy > 0)).sum().item() / max(1, pred.sum().item()); rec = (pred & (yy > 0)).sum().item() / max(1, (yy > 0).sum().item())
    print(name, "brier skill", round(1 - brier / base, 3), "precision", round(prec, 3), "recall", round(rec, 3), "rate", yy.mean().item())
print("obs dim", X.shape[1])
