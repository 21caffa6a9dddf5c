"""Ending a Ray run promptly, however it ends: Ctrl-C, an error, or the last step.

Three guards, each bounded in time:

- `wait_started`: the actors' first call, with a deadline; actors that Ray cannot place (the
  cluster's CPUs are held by other work) fail the run with what the cluster has free, instead of
  waiting forever.
- `shutdown`: kill the actors and stop an embedded Ray with a deadline; what an embedded Ray
  leaves running after it (it runs as this process's descendants: GCS, raylet, workers, the
  actors) is killed.
- `interrupt_deadline` (the CLI's): after Ctrl-C, a process that is still alive `seconds` later
  writes every thread's stack to stderr (the diagnosis), kills its descendants and exits with 130.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
from typing import Iterator


def sigint_as_a_terminal_gives() -> None:
    """For `subprocess.Popen(preexec_fn=...)`: the child starts with SIGINT at its default, as a
    foreground command in a terminal does, even when this process ignores SIGINT (started with `&`
    from a script, as a test harness or CI may do; a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def descendants(pid: int) -> list[int]:
    """Process ids of every live descendant of `pid` (Linux `/proc`; empty elsewhere)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_all(pids: list[int], grace_s: float = 2.0) -> None:
    """SIGTERM `pids`, then SIGKILL those still alive after `grace_s` seconds."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        alive = [p for p in pids if _alive(p)]
        for p in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive(p) for p in alive):
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_started(actors: list, timeout_s: float) -> list[int]:
    """The actors' process ids once Ray has placed and started every one; a RuntimeError after
    `timeout_s` seconds otherwise, saying what the cluster has free."""
    import ray
    from ray.exceptions import GetTimeoutError

    try:
        return ray.get([a.pid.remote() for a in actors], timeout=timeout_s)
    except GetTimeoutError as e:
        free = ray.available_resources()
        raise RuntimeError(f"the {len(actors)} scoring actors did not all start within {timeout_s:g}s (ray.start_timeout_s); "
                           f"the Ray cluster has {free.get('CPU', 0.0):g} CPUs and {free.get('GPU', 0.0):g} GPUs free: "
                           "other work holds the rest. Free the cluster, use fewer actors or fewer CPUs each "
                           "(ray.cpus_per_actor), or raise ray.start_timeout_s") from e


def shutdown(actors: list, started: bool, timeout_s: float = 8.0, keep: frozenset[int] = frozenset()) -> None:
    """Kill `actors` and, when this process `started` an embedded Ray, stop it within `timeout_s`
    seconds: Ray's own shutdown runs on a helper thread, and whatever is left of this process's
    descendants afterwards (a shutdown that blocked, workers still exiting) is killed, except
    `keep` (the processes the caller had before Ray started: not Ray's to kill)."""
    import ray

    for handle in actors:
        with contextlib.suppress(Exception):  # a dead actor or a broken connection: nothing left to kill
            ray.kill(handle, no_restart=True)
    if not started:
        return
    ours = descendants(os.getpid())
    done = threading.Thread(target=ray.shutdown, name="ray-shutdown", daemon=True)
    done.start()
    done.join(timeout_s)
    if done.is_alive():
        print(f"learnability: Ray did not shut down within {timeout_s:g}s; killing its processes", file=sys.stderr)
        atexit.unregister(ray.shutdown)  # Ray's own exit hook would block the interpreter's exit the same way
    kill_all([p for p in dict.fromkeys(ours + descendants(os.getpid())) if p not in keep])


@contextlib.contextmanager
def interrupt_deadline(seconds: float = 10.0) -> Iterator[None]:
    """Within the block, Ctrl-C raises KeyboardInterrupt as usual and arms a deadline: if the
    process is still alive `seconds` later, every thread's stack goes to stderr, the process's
    descendants are killed and it exits with status 130. The deadline is armed by a watcher thread
    woken by the signal itself (`signal.set_wakeup_fd`), so it holds even when the main thread is
    blocked in native code that never runs Python's signal handlers. Main thread only.

    A process that started with SIGINT ignored (a command run with `&` from a script: POSIX has its
    shell ignore SIGINT for it, and Python keeps that) is left as it is: it ignores Ctrl-C."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield
        return
    timers: list[threading.Timer] = []

    def expire() -> None:
        print(f"learnability: still running {seconds:g}s after Ctrl-C; the stacks of every thread follow, "
              "then its processes are killed", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        kill_all(descendants(os.getpid()), grace_s=1.0)
        os._exit(130)

    def watch(fd: int) -> None:
        while data := os.read(fd, 64):  # b"" once the block has ended and closed the write end
            if signal.SIGINT in data and not timers:
                timers.append(threading.Timer(seconds, expire))
                timers[0].daemon = True
                timers[0].start()

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, whatever handler was installed before
    watcher = threading.Thread(target=watch, args=(read_fd,), name="ctrl-c-deadline", daemon=True)
    watcher.start()
    try:
        yield
    finally:  # the block has ended (its clean-up done): the deadline no longer applies
        signal.signal(signal.SIGINT, previous)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)
        watcher.join(1.0)
        os.close(read_fd)
        for t in timers:
            t.cancel()
