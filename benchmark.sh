#!/usr/bin/env bash
# Run the algorithm x env x seed matrix, locally in parallel or as a Slurm array job, then report:
# DIR/results.md (final return and cost per algo x env, mean ± std over seeds, published references, throughput)
# and DIR/curves.png (return and cost against steps).
# Resumes by default: a run whose folder in DIR/runs already has a summary.json, with the same config.json (every
# Args field of the script, as the run used them, but those that do not change results: track, wandb_*,
# capture_video, save_model, eval_checkpoint, cuda) and code_commit (the last commit of the script), is skipped
# with one line; a script with uncommitted edits ("-dirty") or outside git is always run again. A matching folder
# without summary.json (an interrupted run) is moved to DIR/runs/.interrupted/ and the run starts again. A run that
# is going on elsewhere (a second benchmark.sh on the same DIR, a resubmitted Slurm array) holds a lock in
# DIR/runs/.locks/: it is neither started twice nor moved, one line says so. The check is benchmarks/resume.py,
# called by each line of DIR/tasks.txt, so local runs and Slurm tasks behave the same. --no-resume runs everything
# again (old folders stay; the report keeps the newest finished run of each algo x env x seed).
# Repeated entries in --algos, --envs and --seeds are dropped (the first one stays).
#
#   bash benchmark.sh --quick                                   # a tiny matrix: checks the pipeline in ~2 minutes
#   bash benchmark.sh --algos ppo,ppo_lagrangian --envs SafetyPointGoal1-v0 --seeds 1,2,3 \
#        --total-timesteps SafetyPointGoal1-v0=300000,SafetyHalfCheetahVelocity-v1=1000000 --workers 2
#   bash benchmark.sh --slurm --submit ...                      # one array task per (algo, env, seed) + a report job
#   bash benchmark.sh ... --out DIR                             # again after an interruption: finished runs are skipped
set -euo pipefail
ROOT="$(cd "$(dirname "$0")" && pwd)"

usage() {
  cat <<'EOF'
usage: bash benchmark.sh [options]
  --algos LIST            comma-separated scripts (default: ppo,trpo,ppo_lagrangian,cppo,dyna_cppo,cvpo)
  --envs LIST             comma-separated env ids (default: SafetyPointGoal1-v0,SafetyHalfCheetahVelocity-v1)
  --seeds LIST            comma-separated seeds (default: 1,2,3); in all three lists a repeat is dropped
  --total-timesteps SPEC  N for every env, or ENV=N,ENV=N per env (default: each script's own default)
  --workers N             parallel local runs (default: the number of cores)
  --throughput            also measure raw vector-env stepping SPS per env, for the ratio table
  --quick                 tiny sizes (2 envs, 2000 steps), by default on SafetyHalfCheetahVelocity-v1 with seeds 1,2
  --out DIR               where runs, logs and the report go (default: benchmark-results/YYYYmmdd-HHMMSS);
                          a run already finished in DIR/runs with the same config (all arguments that change
                          results) and committed code is skipped, an interrupted one (no summary.json) is moved
                          to DIR/runs/.interrupted/ and rerun, and one running elsewhere is left to it
  --no-resume             run every run again, even if DIR/runs has it finished (nothing is moved; a run going
                          on elsewhere is still not started twice)
  --track                 pass --track to every run (W&B; offline without an API key)
  --slurm                 write DIR/benchmark.sbatch (an array job, one task per run) instead of running locally
  --submit                with --slurm: submit it with sbatch, plus a report job that runs after it
  --report-only           only (re)build DIR/results.md and DIR/curves.png from DIR/runs
EOF
}

ALGOS="ppo,trpo,ppo_lagrangian,cppo,dyna_cppo,cvpo"
ENVS=""
SEEDS=""
STEPS=""
WORKERS="$(nproc 2>/dev/null || echo 2)"
OUT=""
QUICK=0 THROUGHPUT=0 TRACK=0 SLURM=0 SUBMIT=0 REPORT_ONLY=0 RESUME=1
while [ $# -gt 0 ]; do
  case "$1" in
    --algos) ALGOS="$2"; shift 2 ;;
    --envs) ENVS="$2"; shift 2 ;;
    --seeds) SEEDS="$2"; shift 2 ;;
    --total-timesteps) STEPS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --throughput) THROUGHPUT=1; shift ;;
    --track) TRACK=1; shift ;;
    --slurm) SLURM=1; shift ;;
    --submit) SUBMIT=1; shift ;;
    --report-only) REPORT_ONLY=1; shift ;;
    --no-resume) RESUME=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "benchmark.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  PYTHON="$ROOT/.venv/bin/python"
  [ -x "$PYTHON" ] || PYTHON="$(command -v python3.10 || command -v python)"
fi
if [ "$QUICK" = 1 ]; then
  ENVS="${ENVS:-SafetyHalfCheetahVelocity-v1}"; SEEDS="${SEEDS:-1,2}"; THROUGHPUT=1
fi
ENVS="${ENVS:-SafetyPointGoal1-v0,SafetyHalfCheetahVelocity-v1}"
SEEDS="${SEEDS:-1,2,3}"

dedup() {  # a comma-separated list without repeats, the first of each kept: two tasks of one run would collide
  local out="" item
  for item in ${1//,/ }; do
    case ",$out," in *",$item,"*) ;; *) out="${out:+$out,}$item" ;; esac
  done
  echo "$out"
}
ALGOS="$(dedup "$ALGOS")"; ENVS="$(dedup "$ENVS")"; SEEDS="$(dedup "$SEEDS")"
[ -n "$OUT" ] || OUT="benchmark-results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT/logs" "$OUT/throughput"
OUT="$(cd "$OUT" && pwd)"

if [ "$REPORT_ONLY" = 1 ]; then
  exec "$PYTHON" "$ROOT/benchmarks/report.py" --out "$OUT"
fi
if ! [[ "$WORKERS" =~ ^[1-9][0-9]*$ ]]; then
  echo "benchmark.sh: --workers must be a positive integer, got $WORKERS" >&2; exit 2
fi
for algo in ${ALGOS//,/ }; do
  [ -f "$ROOT/$algo.py" ] || { echo "benchmark.sh: no script $algo.py in $ROOT" >&2; exit 2; }
done

steps_for() {  # the --total-timesteps of an env from STEPS ("N" or "ENV=N,ENV=N"), empty for the script's default
  local env="$1" item
  if [[ "$STEPS" =~ ^[0-9]+$ ]]; then echo "$STEPS"; return; fi
  for item in ${STEPS//,/ }; do
    if [ "${item%%=*}" = "$env" ]; then echo "${item#*=}"; return; fi
  done
}

num_envs_for() {  # the scripts' default --num-envs for ALGO ENV (2 in quick mode), for the throughput table
  if [ "$QUICK" = 1 ] || [[ "$2" != *Velocity* ]]; then echo 2; elif [ "$1" = cvpo ]; then echo 4; else echo 8; fi
}

quick_args() {  # tiny sizes: 2 envs x 1000 steps (one velocity-task episode each), a few updates
  local common="--num-envs 2 --total-timesteps 2000 --eval-episodes 1"
  case "$1" in
    cvpo) echo "$common --learning-starts 1000 --batch-size 32 --num-sampled-actions 4 --hidden 32 --log-every 500" ;;
    dyna_cppo) echo "$common --num-steps 500 --model-start-iter 0 --model-rollouts 64" ;;
    *) echo "$common --num-steps 500" ;;
  esac
}

# One line per run in tasks.txt: the same command runs locally (xargs) or as a Slurm array task. benchmarks/resume.py
# skips the run if it already finished (same config and committed code_commit) or is running elsewhere (its lock is
# held), else it runs the script, output to the log.
no_resume=""
if [ "$RESUME" = 0 ]; then no_resume="--no-resume "; fi
: > "$OUT/tasks.txt"
: > "$OUT/failed.txt"
for algo in ${ALGOS//,/ }; do
  for env in ${ENVS//,/ }; do
    for seed in ${SEEDS//,/ }; do
      name="${algo}__${env}__${seed}"
      args="--env-id $env --seed $seed"
      if [ "$QUICK" = 1 ]; then args="$args $(quick_args "$algo")"; fi
      steps="$(steps_for "$env")"
      if [ -n "$steps" ] && [ "$QUICK" = 0 ]; then args="$args --total-timesteps $steps"; fi
      if [ "$TRACK" = 1 ]; then args="$args --track"; fi
      on_failure="echo \"$name: exit \$? (see logs/$name.log)\" >> failed.txt"
      echo "cd '$OUT' && '$PYTHON' '$ROOT/benchmarks/resume.py' $no_resume--log 'logs/$name.log' '$ROOT/$algo.py' $args" \
        "|| $on_failure" >> "$OUT/tasks.txt"
    done
  done
done
NUM_TASKS=$(wc -l < "$OUT/tasks.txt")

if [ "$THROUGHPUT" = 1 ]; then  # raw stepping of each env at each num_envs the runs use, measured before the runs
  for env in ${ENVS//,/ }; do
    for n in $(for algo in ${ALGOS//,/ }; do num_envs_for "$algo" "$env"; done | sort -u); do
      raw_steps=$([ "$QUICK" = 1 ] && echo 2000 || echo 50000)
      "$PYTHON" "$ROOT/benchmarks/env_sps.py" --env-id "$env" --num-envs "$n" --steps "$raw_steps" \
        > "$OUT/throughput/${env}__${n}.json" 2> "$OUT/logs/throughput__${env}__${n}.log" \
        || echo "throughput ${env} x ${n}: failed (see logs/throughput__${env}__${n}.log)" >> "$OUT/failed.txt"
    done
  done
fi

if [ "$SLURM" = 1 ]; then
  cat > "$OUT/benchmark.sbatch" <<EOF
#!/bin/bash
#SBATCH --job-name=safe-rl-benchmark
#SBATCH --array=0-$((NUM_TASKS - 1))
#SBATCH --cpus-per-task=2
#SBATCH --output=$OUT/logs/slurm-%A_%a.out
# One task per (algo, env, seed): line SLURM_ARRAY_TASK_ID + 1 of tasks.txt. Runs land in $OUT/runs.
bash -c "\$(sed -n "\$((SLURM_ARRAY_TASK_ID + 1))p" '$OUT/tasks.txt')"
EOF
  echo "wrote $OUT/benchmark.sbatch ($NUM_TASKS array tasks)"
  if [ "$SUBMIT" = 1 ]; then
    job=$(sbatch --parsable "$OUT/benchmark.sbatch")
    report=$(sbatch --parsable --dependency=afterany:"$job" --job-name=safe-rl-report \
      --output="$OUT/logs/slurm-report-%j.out" --wrap "'$PYTHON' '$ROOT/benchmarks/report.py' --out '$OUT'")
    echo "submitted array job $job and report job $report; results will be in $OUT/results.md"
  else
    echo "submit with: sbatch $OUT/benchmark.sbatch; then: bash benchmark.sh --report-only --out $OUT"
  fi
  exit 0
fi

resume_note=""
if [ "$RESUME" = 1 ]; then resume_note="; runs already finished in $OUT/runs are skipped"; fi
echo "running $NUM_TASKS runs with $WORKERS workers; logs in $OUT/logs$resume_note"
tr '\n' '\0' < "$OUT/tasks.txt" | xargs -0 -P "$WORKERS" -n 1 bash -c
if [ -s "$OUT/failed.txt" ]; then
  echo "failed runs:"; sed 's/^/  /' "$OUT/failed.txt"
fi
"$PYTHON" "$ROOT/benchmarks/report.py" --out "$OUT"
