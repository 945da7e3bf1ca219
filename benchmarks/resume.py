"""Resume check of one benchmark run: skip it if it already finished with the same config and code, else (re)start it.

benchmark.sh writes one line per run to OUT/tasks.txt, and every line (a local xargs job or a Slurm array task)
runs this in OUT, in place of the script itself:
    python benchmarks/resume.py [--no-resume] [--log logs/NAME.log] SCRIPT.py ARGS...
The run's key is what SCRIPT.py would write to config.json for ARGS: every field of the script's own `Args`
(parsed with tyro, then completed by the script's `env_layout` if it has one, so num_envs and num_steps are the
ones the run would use, and a field left out is the script's default), except those that do not change results
(IGNORED_FIELDS), plus code_commit (the script's `code_version()`: the last commit that changed the script,
"-dirty" if it was edited since, None outside git). A config.json without one of these fields (an older run)
matches nothing.

1. Lock: an exclusive non-blocking flock on runs/.locks/NAME__HASH.lock (HASH: of the whole key). If another
   process holds it, the same run is going on elsewhere (a second benchmark.sh on the same OUT, a resubmitted
   Slurm array, a duplicate task): print one line and exit 0, touching nothing. The lock's fd stays open and
   inheritable across the exec below, so the lock lasts until the script (and every process it forked) ends.
2. If runs/ holds a folder with that key and a summary.json, and code_commit is a commit (not None, not
   "-dirty": edits that were never committed cannot be told apart), the run finished: print one line and exit 0.
   Code that is edited or outside git is always run again, with one line saying so.
3. Folders with that key and no summary.json (interrupted runs: none is running, since we hold the lock) are
   moved to runs/.interrupted/, one line each.
4. The script runs in this process (exec), its stdout and stderr in --log.
With --no-resume steps 2 and 3 are left out: the script runs even if it finished before, and nothing is moved;
the lock is still taken, so a run going on elsewhere is not started twice (nor its folder moved by a later check).
If the key cannot be worked out (the script does not import, or rejects ARGS), one line on stderr says so and the
script runs without lock or check: its own error, if any, goes to its log.
"""

import argparse
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import importlib.util
import io
import json
import os
import re
import sys

# Args fields left out of the key: they change logging, outputs or the device, not the results of the run.
IGNORED_FIELDS = (
    "track",
    "wandb_project_name",
    "wandb_entity",
    "capture_video",
    "save_model",
    "eval_checkpoint",
    "cuda",
)
LOCKS = ".locks"  # under runs/: one (empty) lock file per key; it stays after the run, which is harmless
INTERRUPTED = ".interrupted"  # under runs/: interrupted run folders, moved here rather than deleted


def load_script(script: str):
    """Import SCRIPT.py as a module (its main() sits behind the __main__ guard, so nothing runs)."""
    name = "_resume_" + os.path.splitext(os.path.basename(script))[0]
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # tyro looks the module up to read Args' source (its error messages need it)
    spec.loader.exec_module(module)
    return module


def run_key(script: str, args: list) -> dict:
    """The key of `python SCRIPT args`: the config.json fields it would write (every Args field after env_layout,
    but IGNORED_FIELDS, as JSON holds them) and code_commit from code_version(). Raises SystemExit when the script
    would reject the arguments."""
    import tyro

    module = load_script(script)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        parsed = tyro.cli(module.Args, args=list(args))
    if hasattr(module, "env_layout"):
        parsed = module.env_layout(parsed)
    fields = {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed) if f.name not in IGNORED_FIELDS}
    key = json.loads(json.dumps(fields))  # as config.json has them: tuples as lists
    key["code_commit"] = module.code_version()["code_commit"]
    return key


def same_value(a, b) -> bool:
    """Equal as JSON (so a NaN equals a NaN, and 5000 is not 5000.0: both sides come from one dataclass)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def matching_runs(runs_dir: str, key: dict) -> tuple:
    """(finished, unfinished): the run folders in runs_dir whose config.json has every field of this key with the
    same value, with and without a summary.json. A folder without a readable config.json, or whose config.json
    lacks a field of the key (a run from before the field existed or was recorded), matches nothing."""
    finished, unfinished = [], []
    for run_dir in sorted(glob.glob(os.path.join(runs_dir, "*"))):  # glob skips .locks and .interrupted
        try:
            with open(os.path.join(run_dir, "config.json")) as f:
                config = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(config, dict) or any(
            name not in config or not same_value(config[name], value) for name, value in key.items()
        ):
            continue
        (finished if os.path.exists(os.path.join(run_dir, "summary.json")) else unfinished).append(run_dir)
    return finished, unfinished


def is_commit(code_commit) -> bool:
    """A committed version of the script: not None (outside git) and not "-dirty" (edited since)."""
    return bool(code_commit) and not code_commit.endswith("-dirty")


def short_commit(code_commit) -> str:
    """abc1234 for a sha, abc1234-dirty for an edited script, none outside git."""
    if not code_commit:
        return "none"
    return code_commit[:7] + ("-dirty" if code_commit.endswith("-dirty") else "")


def run_name(key: dict) -> str:
    return f"{key['exp_name']}__{key['env_id']}__{key['seed']}"


def lock_path(runs_dir: str, key: dict) -> str:
    """runs/.locks/NAME__HASH.lock: the run's name, made filename-safe, and a hash of the whole key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", run_name(key))
    return os.path.join(runs_dir, LOCKS, f"{name}__{digest}.lock")


def take_lock(path: str):
    """An fd holding an exclusive flock on path, or None if another process holds it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def move_aside(run_dir: str, runs_dir: str) -> str:
    """Move an interrupted run folder to runs/.interrupted/ (a numbered name if that one is taken); its new path."""
    folder = os.path.join(runs_dir, INTERRUPTED)
    os.makedirs(folder, exist_ok=True)
    dest = os.path.join(folder, os.path.basename(run_dir))
    n = 1
    while os.path.exists(dest):
        dest = os.path.join(folder, f"{os.path.basename(run_dir)}.{n}")
        n += 1
    os.rename(run_dir, dest)
    return dest


def main(argv: list) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-resume", action="store_true", help="run the script even if it finished, moving nothing (still locked)"
    )
    parser.add_argument("--log", help="the script's stdout and stderr go here (truncated only when it runs)")
    parser.add_argument("script", help="the algorithm script")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    opts = parser.parse_args(argv)
    environ = dict(os.environ)  # the script runs with the environment it would have had: importing it may change it
    runs_dir = "runs"

    try:
        key = run_key(opts.script, opts.args)
    except (Exception, SystemExit) as e:  # a script that does not import or rejects its arguments: its run says why
        message = " ".join(str(e).split())  # one line
        without = "the lock" if opts.no_resume else "resume"
        print(f"resume check failed ({type(e).__name__}: {message}); running without {without}", file=sys.stderr)
        key = None

    if key is not None:
        name = run_name(key)
        path = lock_path(runs_dir, key)
        lock_fd = take_lock(path)
        if lock_fd is None:
            print(f"{name}: running elsewhere (lock {path}); not started", flush=True)
            return
        os.set_inheritable(lock_fd, True)  # held by the script after the exec, until it ends
        if not opts.no_resume:
            finished, unfinished = matching_runs(runs_dir, key)
            commit = key["code_commit"]
            if not is_commit(commit):
                why = "uncommitted edits" if commit else "not in a git checkout"
                print(
                    f"{name}: code {short_commit(commit)} ({why}) is not a commit, so a finished run is never "
                    f"reused ({len(finished)} in {runs_dir}/ with this config); running it",
                    flush=True,
                )
            elif finished:
                print(
                    f"skip {name}: finished in {finished[-1]} ({key['total_timesteps']:,} steps, code "
                    f"{short_commit(commit)}); --no-resume reruns it",
                    flush=True,
                )
                return
            for run_dir in unfinished:
                dest = move_aside(run_dir, runs_dir)
                print(
                    f"{name}: moved interrupted run {run_dir} (no summary.json) to {dest}; starting again", flush=True
                )

    sys.stdout.flush()
    sys.stderr.flush()
    if opts.log:
        fd = os.open(opts.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    os.execve(sys.executable, [sys.executable, opts.script, *opts.args], environ)


if __name__ == "__main__":
    main(sys.argv[1:])
