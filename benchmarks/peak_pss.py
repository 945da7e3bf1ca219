"""Run a command and report the peak memory of its whole process tree (the run and its env workers).

Usage: python benchmarks/peak_pss.py python ppo.py --env-id SafetyPointGoal1-v0
The command runs as given (its output passes through); once it exits, one line goes to stderr:
    PEAK_PSS_MB <summed PSS at the peak> processes <how many> per [<PSS of each process at that sample>]
PSS (proportional set size) splits shared pages between the processes sharing them, so the sum over a
tree is the memory it really holds. Sampled once a second: a spike shorter than that can be missed.
The exit code is the command's.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from env_sps import process_tree, pss_mb  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.strip().splitlines()[2])
    proc = subprocess.Popen(sys.argv[1:])
    peak, per = 0.0, []
    while proc.poll() is None:
        sizes = [pss_mb(p) for p in process_tree(proc.pid)]
        if sum(sizes) > peak:
            peak, per = sum(sizes), sizes
        time.sleep(1.0)
    print(f"PEAK_PSS_MB {peak:.0f} processes {len(per)} per {[round(x) for x in per]}", file=sys.stderr, flush=True)
    sys.exit(proc.returncode)
