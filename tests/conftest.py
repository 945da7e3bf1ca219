"""Shared test helpers (pytest loads this file first; tests import from it): import a top-level script as a
module, run it as a user would, read its run folder."""

import csv
import glob
import importlib.util
import json
import math
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name: str):
    """Import `ROOT/{name}.py` as a module (nothing runs at import: main() sits behind the __main__ guard)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, cwd, *args: str, timeout: float = 300, env: dict = None) -> subprocess.CompletedProcess:
    """`python {name}.py args...` in `cwd`, with this interpreter; output captured as text.
    W&B is offline unless `env` says otherwise (a value of None removes that variable)."""
    os.makedirs(cwd, exist_ok=True)
    env = {
        k: v
        for k, v in {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **(env or {})}.items()
        if v is not None
    }
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, f"{name}.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run_dir(cwd) -> str:
    dirs = glob.glob(os.path.join(str(cwd), "runs", "*"))
    assert len(dirs) == 1, dirs
    return dirs[0]


def read_progress(run_dir: str) -> list:
    with open(os.path.join(run_dir, "progress.csv"), newline="") as f:
        return list(csv.DictReader(f))


def assert_clean_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Non-zero exit, no traceback, and one line on stderr that says what is wrong."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def assert_finite_rows(rows: list, columns, skip=("episodic_return", "episodic_cost", "episodic_length")) -> None:
    """Every row has every column; all values are finite, except episodic ones before the first episode ends."""
    assert rows, "progress.csv has no rows"
    for column in columns:
        assert column in rows[0], f"missing column {column}"
    for row in rows:
        for key, value in row.items():
            if key not in skip:
                assert math.isfinite(float(value)), (key, value)
    for key in skip:
        if key in rows[-1]:
            assert math.isfinite(float(rows[-1][key])), (key, rows[-1][key])


def read_text(path) -> str:
    with open(path) as f:
        return f.read()


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


def top_level_source(path: str, name: str) -> str:
    """The text of the top-level `def name` or `class name` in a script (its whole body, also after a signature
    split over lines), up to the next top-level statement."""
    text = read_text(path)
    match = re.search(rf"^(def|class) {name}\b.*?(?=^[^\s)])", text, flags=re.S | re.M)  # past a signature's ")"
    assert match, name
    return match.group(0)
