#!/bin/bash
# the runs of README.md, one after the other (nice -n 19; each prints its own CPU time); output: results.txt
cd "$(dirname "$0")" && PY=${PY:-../../../.venv/bin/python}
run() { echo "### train_classifier.py $*"; nice -n 19 $PY train_classifier.py "$@" 2>&1 | grep -v Warn; }
{
run --pool 0,1,2                                    # 64-64 tanh MLP: 4 losses x (s', s' + group max, group max)
run --arch sets --pool 2                             # learned per-group max-pool
run --arch sets --pool 1 --losses bce                # ... next to the full state
run --hidden 200 --act relu --pool 0,2 --losses bce  # a bigger net
run --inputs obsact --pool 0,2 --losses bce          # (s, a): what the dynamics model's hidden layer sees
run --inputs 'obsact,obsact>pred,pred,next>pred' --arch sets --pool 2 --losses bce  # with the model's s_hat
run --inputs 'obsact+pred' --arch sets --pool 2 --losses bce  # (s, a) head trained on real and predicted s
} | tee results.txt
