# The MLP forward of one rollout step, as ppo_lagrangian.py ran it before (a: the ModuleList sliced each call) and
# now (e: unpacked), on a [2, 60] observation; b: the layers' tensors held outside the module (not used).
# Run from the repository root: python docs/ppo-lagrangian-2026-12-01/throughput-s13/forward-bench.py
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, ".")
import ppo_lagrangian as pl  # noqa: E402

torch.set_num_threads(1)
mlp = pl.Actor(60, 2).mean
x = np.random.randn(2, 60).astype(np.float32)
params = [(layer.weight, layer.bias) for layer in mlp.layers]


def a():
    with torch.no_grad():
        h = torch.as_tensor(x)
        for layer in mlp.layers[:-1]:
            h = torch.tanh(F.linear(h, layer.weight, layer.bias))
        return F.linear(h, mlp.layers[-1].weight, mlp.layers[-1].bias).numpy()


def b():
    with torch.no_grad():
        (w1, b1), (w2, b2), (w3, b3) = params
        h = torch.tanh(F.linear(torch.as_tensor(x), w1, b1))
        return F.linear(torch.tanh(F.linear(h, w2, b2)), w3, b3).numpy()


def e():
    with torch.no_grad():
        return mlp(torch.as_tensor(x)).numpy()


print("identical:", np.array_equal(a(), b()), np.array_equal(a(), e()))
for _ in range(3):
    for f in (a, b, e):
        start = time.perf_counter()
        for _ in range(4000):
            f()
        print(f.__name__, f"{(time.perf_counter() - start) / 4000 * 1e6:.1f} us", end="  ")
    print()
