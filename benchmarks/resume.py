"""Resume check of one benchmark run: skip it if it already finished with the same code, else (re)start it.

benchmark.sh writes one line per run to OUT/tasks.txt, and every line (a local xargs job or a Slurm array task)
runs this in OUT, in place of the script itself:
    python benchmarks/resume.py [--no-resume] [--log logs/NAME.log] SCRIPT.py ARGS...
The run's key is what SCRIPT.py would write to config.json for ARGS: exp_name, env_id, seed and total_timesteps
(parsed with the script's own `Args`, so a step count left out is the script's default), and code_commit (the
script's `code_version()`: the last commit that changed the script, "-dirty" if it was edited since). If runs/
holds a folder with that key and a summary.json, the run finished: print one line and exit 0. Folders with that
key and no summary.json (interrupted runs) are removed. Then the script runs in this process (exec), its output
in --log. With --no-resume nothing is checked, skipped or removed: the script just runs.
"""

import argparse
import contextlib
import glob
import importlib.util
import io
import json
import os
import shutil
import sys

KEY_FIELDS = ("exp_name", "env_id", "seed", "total_timesteps", "code_commit")


def load_script(script: str):
    """Import SCRIPT.py as a module (its main() sits behind the __main__ guard, so nothing runs)."""
    name = "_resume_" + os.path.splitext(os.path.basename(script))[0]
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_key(script: str, args: list) -> dict:
    """The key of `python SCRIPT args`: the config.json fields it would write, from the script's own Args parser
    and code_version(). Raises SystemExit when the script would reject the arguments."""
    import tyro

    module = load_script(script)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        parsed = tyro.cli(module.Args, args=list(args))
    key = {name: getattr(parsed, name) for name in KEY_FIELDS[:-1]}
    key["code_commit"] = module.code_version()["code_commit"]
    return key


def matching_runs(runs_dir: str, key: dict) -> tuple:
    """(finished, unfinished): the run folders in runs_dir whose config.json has this key, with and without a
    summary.json. A folder without a readable config.json matches nothing (a config.json from before
    code_commit was recorded does not match either)."""
    finished, unfinished = [], []
    for run_dir in sorted(glob.glob(os.path.join(runs_dir, "*"))):
        try:
            with open(os.path.join(run_dir, "config.json")) as f:
                config = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(config, dict) or any(name not in config or config[name] != key[name] for name in KEY_FIELDS):
            continue
        (finished if os.path.exists(os.path.join(run_dir, "summary.json")) else unfinished).append(run_dir)
    return finished, unfinished


def short_commit(code_commit) -> str:
    """abc1234 for a sha, abc1234-dirty for an edited script, none outside git."""
    if not code_commit:
        return "none"
    return code_commit[:7] + ("-dirty" if code_commit.endswith("-dirty") else "")


def main(argv: list) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-resume", action="store_true", help="run the script, checking and removing nothing")
    parser.add_argument("--log", help="the script's stdout and stderr go here (truncated only when it runs)")
    parser.add_argument("script", help="the algorithm script")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    opts = parser.parse_args(argv)
    environ = dict(os.environ)  # the script runs with the environment it would have had: importing it may change it

    if not opts.no_resume:
        try:
            key = run_key(opts.script, opts.args)
        except (Exception, SystemExit):  # a script that does not import or rejects its arguments: its run says why
            key = None
        if key is not None:
            name = f"{key['exp_name']}__{key['env_id']}__{key['seed']}"
            finished, unfinished = matching_runs("runs", key)
            if finished:
                commit = key["code_commit"]
                caveat = ": uncommitted edits are not compared" if not commit or commit.endswith("-dirty") else ""
                steps = f"{key['total_timesteps']:,} steps"
                print(
                    f"skip {name}: finished in {finished[-1]} ({steps}, code {short_commit(commit)}{caveat}); "
                    "--no-resume reruns it",
                    flush=True,
                )
                return
            for run_dir in unfinished:
                shutil.rmtree(run_dir)
                print(f"{name}: removed interrupted run {run_dir} (no summary.json); starting again", flush=True)

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
