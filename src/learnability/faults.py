"""Fault injection for the crash tests: `LEARNABILITY_KILL_AT=<point>:<n>` makes the process
SIGKILL itself the n-th time it reaches `point(<point>)` (e.g. `checkpoint_write:2`, mid-way
through writing the second checkpoint); `<point>:<n>@<rank>` only in the data-parallel rank
`<rank>` (the launcher's RANK). With `LEARNABILITY_KILL_ONCE=<file>` too, only a process that finds
no such file kills itself (creating it first): a restarted process runs on. Unset, `point` costs
one dict lookup."""

from __future__ import annotations

import os
import signal

_seen: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get("LEARNABILITY_KILL_AT")
    if not spec:
        return
    spec, _, rank = spec.partition("@")
    want, _, n = spec.partition(":")
    if want != name or (rank and rank != os.environ.get("RANK", "0")):
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(n or 1):
        once = os.environ.get("LEARNABILITY_KILL_ONCE")
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)
