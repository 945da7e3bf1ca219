"""Raw vector-env stepping speed with random actions: the floor that an algorithm's end-to-end SPS is compared to.

Usage: python benchmarks/env_sps.py --env-id SafetyHalfCheetahVelocity-v1 --num-envs 8 --steps 100000
Prints one JSON line: {"env_id", "num_envs", "vector_env", "steps", "seconds", "sps"}.
The vector mode follows the algorithm scripts' `--vector-env auto` rule (async for navigation, sync for velocity).
"""
import argparse
import json
import time

import numpy as np
import safety_gymnasium


def raw_sps(env_id: str, num_envs: int, steps: int, vector_env: str = "auto", seed: int = 0) -> dict:
    asynchronous = vector_env == "async" or (vector_env == "auto" and num_envs > 1 and "Velocity" not in env_id)
    envs = safety_gymnasium.vector.make(env_id, num_envs=num_envs, asynchronous=asynchronous)
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    iterations = max(1, steps // num_envs)
    start = time.perf_counter()
    for _ in range(iterations):
        envs.step(rng.uniform(low, high, size=(num_envs,) + low.shape))
    seconds = time.perf_counter() - start
    envs.close()
    return {"env_id": env_id, "num_envs": num_envs, "vector_env": "async" if asynchronous else "sync",
            "steps": iterations * num_envs, "seconds": seconds, "sps": iterations * num_envs / seconds}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="SafetyPointGoal1-v0")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--vector-env", choices=["auto", "sync", "async"], default="auto")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    print(json.dumps(raw_sps(a.env_id, a.num_envs, a.steps, a.vector_env, a.seed)))
