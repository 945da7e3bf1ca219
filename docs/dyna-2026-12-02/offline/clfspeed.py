"""Forward + backward time of dyna_cppo.CostClassifier (max/min form) against encoding every element, and the
dynamics model's K-step pass, on a batch of 1000 windows x 5 steps of PointGoal1-sized inputs."""
import os, sys, time, torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")); torch.set_num_threads(1)
import dyna_cppo as D
groups = D.observation_groups("SafetyPointGoal1-v0")
clf = D.CostClassifier(60, 2, groups, torch.Generator().manual_seed(0))
model = D.DynamicsModel(60, 2, 200, torch.Generator().manual_seed(0))
x, a, y = torch.randn(1000, 5, 60), torch.randn(1000, 5, 2), torch.rand(1000, 5).round()
def enc_naive():
    o = x * clf.input_stats[0] + clf.input_stats[1]
    f = torch.cat([torch.tanh(e(o[..., s:t, None])).amax(-2) for e, (s, t) in zip(clf.encoders, groups)], -1)
    return clf.net(torch.cat([f, a], -1)).squeeze(-1)
def run(fn, n=20):
    t = time.time()
    for _ in range(n):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(fn(), y); loss.backward()
    return 1000 * (time.time() - t) / n
def mdl():
    s = x[:, 0]; l = 0
    for k in range(5):
        s, r = model(s, a[:, k]); l = l + s.pow(2).mean() + r.pow(2).mean()
    return l.expand(1000, 5) * 0 + l
for rep in range(3):
    print("naive %.1f  trick %.1f  model %.1f ms" % (run(enc_naive), run(lambda: clf(x, a)), run(mdl)))
