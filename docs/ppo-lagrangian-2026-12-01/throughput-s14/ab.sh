# A: the repository's scripts; B: /tmp/s14/batch, a copy of them with sched-batch.patch applied.
# Usage: bash ab.sh <script> [reps] [steps]
cd /work/main
S=$1; N=${2:-3}; STEPS=${3:-32000}
for i in $(seq $N); do
  echo "== A (HEAD) $S rep $i $(date +%T)"
  .venv/bin/python benchmarks/env_sps.py --env-id SafetyPointGoal1-v0 --steps $STEPS --scripts $S --paired 1
  echo "== B (SCHED_BATCH) $S rep $i $(date +%T)"
  .venv/bin/python benchmarks/env_sps.py --env-id SafetyPointGoal1-v0 --steps $STEPS --scripts $S --paired 1 --root /tmp/s14/batch
done
