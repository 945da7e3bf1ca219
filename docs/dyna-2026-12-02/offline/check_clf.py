"""dyna_cppo.CostClassifier on the offline PointGoal1 data (data.npz here): train on rollouts 0-6, Brier skill on 7.
Argument: sets (the env's observation groups) or anything else (no groups: an MLP on the whole state)."""
import os, sys, numpy as np, torch, torch.nn.functional as F
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..")); torch.set_num_threads(1)
import dyna_cppo as D
data = dict(np.load(os.path.join(HERE, "data.npz")))
flat = lambda k, idx: np.concatenate([data[k][i][:, 0] for i in idx])
tr, te = range(7), [7]
rms = D.RunningMeanStd(60)
for i in tr: rms.update(data["obs"][i][:, 0])
groups = D.observation_groups("SafetyPointGoal1-v0")
print(groups)
T = lambda x: torch.tensor(x, dtype=torch.float32)
xs_tr, a_tr, y_tr = T(rms.normalize(flat("obs", tr))), T(flat("act", tr)), T((flat("cost", tr) > 0).astype(np.float32))
xs_te, a_te, y_te = T(rms.normalize(flat("obs", te))), T(flat("act", te)), (flat("cost", te) > 0).astype(np.float64)
for seed in (0, 1, 2):
    torch.manual_seed(seed)
    clf = D.CostClassifier(60, 2, groups if sys.argv[1] == "sets" else [], torch.Generator().manual_seed(seed))
    clf.fit_input_scale(rms.mean, rms.var)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    out = []
    for ep in range(1, 21):
        for b in torch.randperm(len(y_tr)).split(256):
            loss = F.binary_cross_entropy_with_logits(clf(xs_tr[b], a_tr[b]), y_tr[b])
            opt.zero_grad(); loss.backward(); opt.step()
        if ep in (5, 10, 20):
            with torch.no_grad(): p = torch.sigmoid(clf(xs_te, a_te)).double().numpy()
            rate = y_te.mean(); out.append(f"ep{ep} {1 - np.mean((p - y_te) ** 2) / (rate * (1 - rate)):.3f}")
    print(seed, *out, flush=True)
