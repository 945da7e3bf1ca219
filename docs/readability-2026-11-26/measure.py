"""Readability numbers of the six scripts at a git revision: lines, main's length, the plumbing share (lines of the
helpers that are the same in every script), where the policy loss is, and the diff sizes between neighbouring
scripts (changed lines: `diff a.py b.py | grep -c '^[<>]'`).
Usage: python docs/readability-2026-11-26/measure.py [REV]   (default: the working tree)"""
import ast
import os
import subprocess
import sys
import tempfile

SCRIPTS = ["ppo", "trpo", "ppo_lagrangian", "cppo", "dyna_cppo", "cvpo"]
PLUMBING = {"env_layout", "check_args", "check_spaces", "RunningMeanStd", "make_envs", "step_envs", "policy_action",
            "evaluate", "final_evaluation", "save_checkpoint", "load_checkpoint", "evaluate_checkpoint", "minutes",
            "RunLogger", "start_run", "finish_run", "episode_columns", "code_version", "Episode"}
LOSS = {"ppo": "policy_loss = ", "ppo_lagrangian": "policy_loss = ", "trpo": "def trpo_step(",
        "cppo": "def m_step_loss(", "dyna_cppo": "def m_step_loss(", "cvpo": "def m_step("}
PAIRS = [("ppo", "ppo_lagrangian"), ("ppo_lagrangian", "cppo"), ("cppo", "dyna_cppo"), ("ppo", "trpo")]


def source(script, rev):
    if rev is None:
        with open(f"{script}.py") as f:
            return f.read()
    return subprocess.run(["git", "show", f"{rev}:{script}.py"], capture_output=True, text=True, check=True).stdout


def measure(text, script):
    lines = text.splitlines()
    tree = ast.parse(text)
    plumbing = main = 0
    for node in tree.body:
        name = getattr(node, "name", None)
        size = node.end_lineno - min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) + 1
        plumbing += size if name in PLUMBING else 0
        main = size if name == "main" else main
    loss = next(i for i, line in enumerate(lines, 1) if LOSS[script] in line)
    return len(lines), main, plumbing / len(lines), loss / len(lines)


if __name__ == "__main__":
    rev = sys.argv[1] if len(sys.argv) > 1 else None
    texts = {s: source(s, rev) for s in SCRIPTS}
    print(f"revision: {rev or 'working tree'}")
    print("| script | lines | main (lines) | plumbing share | policy loss at |")
    print("|---|---|---|---|---|")
    for s in SCRIPTS:
        n, main, share, loss = measure(texts[s], s)
        print(f"| {s}.py | {n} | {main} | {share:.0%} | {loss:.0%} of the file |")
    print()
    print("| diff | changed lines |")
    print("|---|---|")
    for a, b in PAIRS:
        with tempfile.TemporaryDirectory() as tmp:
            for name in (a, b):
                with open(os.path.join(tmp, f"{name}.py"), "w") as f:
                    f.write(texts[name])
            diff = subprocess.run(["diff", f"{tmp}/{a}.py", f"{tmp}/{b}.py"], capture_output=True, text=True).stdout
        changed = sum(1 for line in diff.splitlines() if line[:1] in "<>")
        print(f"| {a}.py → {b}.py | {changed} |")
