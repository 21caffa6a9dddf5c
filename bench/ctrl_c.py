"""Ctrl-C on a Ray run, N times in a row: does the CLI end within 10 s and leave no process behind?

    python bench/ctrl_c.py --times=20          # about 20 x 40 s on 2 cores
    python bench/ctrl_c.py --times=2 --results=/tmp/r   # what the test runs

Each round starts `learnability run --backend=ray --ray.actors=2` (embedded Ray, tiny digits run
of 100000 steps) in a new process group with its output in files, waits for its first training
step, records every process it has started (Ray's GCS, raylet, workers, the two actors), sends
SIGINT to the run and times how long the run takes to exit, then checks that none of those
processes is left. A round that does not end within `--limit` seconds is killed and counted as a
hang, with its stderr kept. Writes bench/results/ctrl_c.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from common import machine, run_main

from learnability.distributed.stopping import _alive, descendants, sigint_as_a_terminal_gives
from learnability.io import atomic_write_text

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
RUN = ["--data.source=digits", "--data.reference_size=300", "--model.learner=cnn_tiny", "--model.proxy=mlp_tiny",
       "--train.batch_size=32", "--reference.epochs=1", "--progress=false", "--train.threads=1",
       "--train.steps=100000", "--backend=ray", "--ray.actors=2", "--ray.cpus_per_actor=0.5", "--ray.num_cpus=2",
       "--ray.object_store_mb=100"]


def _niceness(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return None


def one_round(folder: str, limit_s: float, start_wait_s: float) -> dict:
    """Start a Ray run, Ctrl-C it after its first step; how long it took to exit, what it left."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p))
    out = os.path.join(folder, "run")
    with open(os.path.join(folder, "stdout"), "w") as so, open(os.path.join(folder, "stderr"), "w") as se:
        proc = subprocess.Popen([sys.executable, "-m", "learnability.cli", "run", f"--out={out}", *RUN], env=env,
                                stdout=so, stderr=se, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=sigint_as_a_terminal_gives)
    row: dict = {"started": False}
    try:
        deadline = time.monotonic() + start_wait_s
        while time.monotonic() < deadline and proc.poll() is None and not os.path.isfile(os.path.join(out, "metrics.jsonl")):
            time.sleep(0.1)
        if proc.poll() is not None or not os.path.isfile(os.path.join(out, "metrics.jsonl")):
            row["error"] = f"no training step within {start_wait_s:g}s (exit {proc.poll()})"
            return row
        row["started"] = True
        processes = descendants(proc.pid)
        with open(os.path.join(out, "actors.json")) as f:
            actors = json.load(f)["pids"]
        row.update({"processes": len(processes), "actors_alive_before": sum(_alive(p) for p in actors),
                    "actor_niceness": [_niceness(p) for p in actors]})
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=limit_s)
            row["exit_seconds"] = time.monotonic() - t0
            row["returncode"] = proc.returncode
        except subprocess.TimeoutExpired:
            row["exit_seconds"] = None  # a hang
        time.sleep(0.5)
        row["left_behind"] = [p for p in processes if _alive(p)]
        row["actors_left"] = [p for p in actors if _alive(p)]
        return row
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        with open(os.path.join(folder, "stderr")) as f:
            row["stderr_tail"] = f.read()[-2000:]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--times", type=int, default=20)
    p.add_argument("--limit", type=float, default=10.0, help="seconds a run may take to exit after Ctrl-C")
    p.add_argument("--start-wait", type=float, default=600.0, help="seconds to wait for the first step")
    p.add_argument("--results", default="bench/results")
    p.add_argument("--name", default="ctrl_c")
    a = p.parse_args()
    rows = []
    for i in range(a.times):
        with tempfile.TemporaryDirectory() as folder:
            row = one_round(folder, a.limit, a.start_wait)
        row["round"] = i
        ok = (row["started"] and row.get("exit_seconds") is not None and row.get("returncode") == 130
              and not row["left_behind"] and not row["actors_left"])
        row["ok"] = ok
        if ok:
            row.pop("stderr_tail", None)
        rows.append(row)
        print(json.dumps(row), flush=True)
    times = [r["exit_seconds"] for r in rows if r.get("exit_seconds") is not None]
    passed = sum(r["ok"] for r in rows)
    summary = {"rounds": len(rows), "passed": passed, "limit_s": a.limit,
               "exit_seconds_median": statistics.median(times) if times else None,
               "exit_seconds_max": max(times) if times else None}
    os.makedirs(a.results, exist_ok=True)
    atomic_write_text(os.path.join(a.results, f"{a.name}.json"), json.dumps(
        {"summary": summary, "rows": rows, "command": "python bench/ctrl_c.py " + " ".join(sys.argv[1:]),
         "machine": machine()}, indent=2) + "\n")
    md = (f"Command: `python bench/ctrl_c.py {' '.join(sys.argv[1:])}`  \nMachine: {machine()}\n\n"
          f"Ctrl-C on `learnability run --backend=ray --ray.actors=2` after its first step: {passed} of {len(rows)} rounds "
          f"ended with status 130 within {a.limit:g} s leaving no process behind; exit took "
          f"{summary['exit_seconds_median'] or float('nan'):.2f} s (median), {summary['exit_seconds_max'] or float('nan'):.2f} s "
          f"(max). Processes per run (Ray and the actors): {sorted({r.get('processes') for r in rows if r.get('processes')})}.\n")
    atomic_write_text(os.path.join(a.results, f"{a.name}.md"), md)
    print(md)
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
