import sys, time, importlib.util, numpy as np, torch
spec = importlib.util.spec_from_file_location("cvpo", sys.argv[1]); cvpo = importlib.util.module_from_spec(spec); spec.loader.exec_module(cvpo)
torch.set_num_threads(1); torch.manual_seed(0)
args = cvpo.Args(); O, A, B, K = 60, 2, args.batch_size, args.num_sampled_actions
low, high = -np.ones(A), np.ones(A)
actor = cvpo.Actor(O, A, args.hidden, low, high); target_actor = cvpo.Actor(O, A, args.hidden, low, high)
critics = [cvpo.QNetwork(O, A, args.hidden) for _ in range(3)]; tc = [cvpo.QNetwork(O, A, args.hidden) for _ in range(3)]
copt = torch.optim.Adam([p for q in critics for p in q.parameters()], lr=1e-3, fused=True)
popt = torch.optim.Adam(actor.parameters(), lr=3e-4, fused=True)
buf = cvpo.ReplayBuffer(100000, O, A); rms = cvpo.RunningMeanStd(O); rng = np.random.default_rng(0)
for _ in range(500): buf.add(rng.normal(size=(200, O)), rng.uniform(-1, 1, (200, A)), rng.normal(size=200), (rng.random(200) < .05) * 1.0, rng.normal(size=(200, O)), np.zeros(200))
T = {}
def tick(k, t0): T[k] = T.get(k, 0) + time.perf_counter() - t0
eta, lam, alphas = 0.1, 0.1, [0., 0.]
n = 100
for it in range(n + 10):
    if it == 10: T = {}
    t0 = time.perf_counter(); batches = [buf.sample(rng, B, rms, "cpu") for _ in range(4)]; tick("sample", t0)
    t0 = time.perf_counter(); obs, a, b = cvpo.critic_steps(critics, tc, target_actor, copt, batches, args); tick("critic", t0)
    t0 = time.perf_counter()
    with torch.no_grad():
        om, os_ = target_actor(obs); s = (om + os_ * torch.randn((K,) + om.shape)).clamp(-1, 1); qr, qc = cvpo.target_q_values(tc, obs, s)
    tick("estep_fwd", t0); t0 = time.perf_counter()
    eta, lam = cvpo.solve_dual(qr.numpy(), qc.numpy(), 0.1, 2.5, (eta, lam)); tick("dual", t0); t0 = time.perf_counter()
    w = cvpo.e_step_weights(qr, qc, eta, lam)
    cvpo.m_step(actor, popt, obs, s, w, om, os_, alphas, args); cvpo.polyak(target_actor, actor, 0.05); tick("mstep", t0)
print({k: round(1000 * v / n, 2) for k, v in T.items()}, "total ms/update", round(1000 * sum(T.values()) / n, 1))
