"""Bounded shutdown: the Ctrl-C deadline and the process-tree helpers (no Ray needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from learnability.distributed.stopping import _alive, descendants, kill_all, sigint_as_a_terminal_gives

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="process trees are read from Linux /proc")
SRC = os.path.join(os.path.dirname(__file__), "..", "src")


def _child(body: str, preexec=sigint_as_a_terminal_gives) -> subprocess.Popen:
    code = textwrap.dedent("""
        import subprocess, sys, time
        from learnability.distributed.stopping import interrupt_deadline
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
        print(grandchild.pid, flush=True)
    """) + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)


def _interrupt_after_start(proc: subprocess.Popen) -> int:
    grandchild = int(proc.stdout.readline())
    time.sleep(0.5)  # inside the block
    proc.send_signal(signal.SIGINT)
    return grandchild


def test_a_blocked_clean_up_is_ended_by_the_deadline_with_stacks_and_no_process_left():
    # the main thread swallows KeyboardInterrupt and never leaves the block: a hung clean-up
    proc = _child("""
        def stuck_in_clean_up():
            while True:
                try:
                    time.sleep(1000)
                except KeyboardInterrupt:
                    pass
        with interrupt_deadline(1.5):
            stuck_in_clean_up()
    """)
    grandchild = _interrupt_after_start(proc)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - t0 < 10
    assert "still running 1.5s after Ctrl-C" in err and "stuck_in_clean_up" in err  # the diagnosis: every stack
    assert not _alive(grandchild)


def test_a_clean_up_that_ends_in_time_disarms_the_deadline():
    proc = _child("""
        try:
            with interrupt_deadline(1.0):
                time.sleep(1000)
        except KeyboardInterrupt:
            pass
        time.sleep(2.0)  # past the deadline: the process must live on and exit normally
        grandchild.kill()
        sys.exit(7)
    """)
    _interrupt_after_start(proc)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, err
    assert "still running" not in err


def test_descendants_and_kill_all_reach_grandchildren():
    proc = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                             "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)']); time.sleep(1000)"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(descendants(proc.pid)) < 1:
            time.sleep(0.05)
        tree = descendants(proc.pid)
        with open(f"/proc/{tree[0]}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
        assert len(tree) == 1 and parent == proc.pid
        assert proc.pid not in tree and set(tree) <= set(descendants(os.getpid()))
        kill_all(tree + [proc.pid], grace_s=1.0)
        proc.wait(timeout=10)
        assert not any(_alive(p) for p in tree)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_process_started_with_sigint_ignored_keeps_ignoring_it():
    """`cmd &` from a script starts cmd with SIGINT ignored (POSIX); the deadline leaves that alone.
    (This is also why the Ctrl-C tests hung when `make test` itself ran in the background: every
    process of it ignored SIGINT; the tests now start their children as a terminal would.)"""
    proc = _child("""
        with interrupt_deadline(1.0):
            time.sleep(3.0)  # SIGINT arrives meanwhile: neither KeyboardInterrupt nor the deadline
        grandchild.kill()
        sys.exit(5)
    """, preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    _interrupt_after_start(proc)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 5, err


def test_shutdown_kills_what_ray_left_but_not_the_callers_own_processes():
    pytest.importorskip("ray")
    from learnability.distributed.stopping import shutdown

    sleeper = [sys.executable, "-c", "import time; time.sleep(1000)"]
    mine = subprocess.Popen(sleeper)  # the caller's, from before Ray started
    keep = frozenset(descendants(os.getpid()))  # everything of this process's so far (a Ray of other tests too)
    left = subprocess.Popen(sleeper)  # stands for a Ray process left behind
    try:
        shutdown([], started=True, timeout_s=5.0, keep=keep)  # no Ray initialised: its shutdown is a no-op
        assert left.wait(timeout=10) is not None
        assert mine.poll() is None and mine.pid in keep
    finally:
        for p in (mine, left):
            if p.poll() is None:
                p.kill()
            p.wait()
