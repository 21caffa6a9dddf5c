"""Shard lists from patterns ("shards/{000..009}.tar", "{train,extra}-*.tar") and shard ids."""

from __future__ import annotations

import glob
import os
import re

SHARD_STRIDE = 2 ** 32  # id = shard_index * SHARD_STRIDE + position within the shard
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")


def shard_id(shard_index: int, position: int) -> int:
    """The int64 id of the sample at `position` in shard `shard_index`."""
    if not 0 <= position < SHARD_STRIDE or not 0 <= shard_index < 2 ** 31:
        raise ValueError(f"shard index {shard_index} / position {position} out of range for an int64 id")
    return shard_index * SHARD_STRIDE + position


def split_shard_id(example_id: int) -> tuple[int, int]:
    """Inverse of `shard_id`: (shard_index, position)."""
    return divmod(int(example_id), SHARD_STRIDE)


def expand_braces(pattern: str) -> list[str]:
    """Expand each `{a..b}` (numbers, zero-padded to the width of `a`) and `{x,y,z}` in order:
    'd/{00..02}.tar' -> ['d/00.tar', 'd/01.tar', 'd/02.tar']."""
    m = _BRACE.search(pattern)
    if not m:
        if "{" in pattern or "}" in pattern:
            raise ValueError(f"unbalanced braces in shard pattern {pattern!r}; use e.g. 'shards/{{000..009}}.tar'")
        return [pattern]
    body, head, tail = m.group(1), pattern[:m.start()], pattern[m.end():]
    r = _RANGE.fullmatch(body)
    if r:
        lo, hi = int(r.group(1)), int(r.group(2))
        if hi < lo:
            raise ValueError(f"shard range {{{body}}} in {pattern!r} runs backwards; write {{{r.group(1)}..N}} with N >= {lo}")
        options = [str(i).zfill(len(r.group(1))) for i in range(lo, hi + 1)]
    elif "," in body:
        options = body.split(",")
    else:
        raise ValueError(f"cannot expand {{{body}}} in shard pattern {pattern!r}; use {{000..009}} or {{a,b}}")
    return [p for opt in options for p in expand_braces(head + opt + tail)]


def expand_shards(pattern: str) -> list[str]:
    """Shard paths for `pattern`: braces expanded in order, then each glob sorted. Every path must
    exist; a glob must match something."""
    out = []
    for p in expand_braces(pattern):
        if glob.has_magic(p):
            found = sorted(glob.glob(p))
            if not found:
                raise FileNotFoundError(f"shard pattern {p!r} matches no files")
            out.extend(found)
        elif not os.path.isfile(p):
            raise FileNotFoundError(f"shard {p!r} does not exist (from pattern {pattern!r}); check the path and range")
        else:
            out.append(p)
    return out
