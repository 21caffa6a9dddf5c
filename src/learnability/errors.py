"""Every error the library raises on purpose, in one place. Each is a ValueError (bad input the
user can fix) or a RuntimeError, so callers that catch the builtin keep working; the modules that
raise them re-export them (`config.ConfigError`, `scores.NonFiniteLossError`, ...)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config key or value the user must fix."""


class NonFiniteLossError(FloatingPointError, ValueError):
    """A NaN or infinite loss: a diverged model or bad input values. The CLI exits 1 and keeps the
    run's files (a ValueError too, for callers that treat it as bad input)."""


class CacheMismatchError(ValueError):
    """A saved reference or loss cache does not match the data or weights of this run, or fails its checksum."""


class CheckpointError(ValueError):
    """No usable checkpoint, or one that belongs to another run."""


class OutOfOrderError(RuntimeError):
    """A request for a batch other than the actor's next one (e.g. sent to a restarted actor
    before the learner restored it); the learner re-issues it."""


class RankFailedError(RuntimeError):
    """A rank of a data-parallel run failed or was killed; the others were stopped and the run's
    files and checkpoints are kept (the message says how to resume). The CLI exits 1."""


def report_user_error(e: BaseException, name: str) -> int | None:
    """Print a one-line message for an error the user can act on and return its exit code: 1 for a
    run that stopped (a NaN loss, a failed rank; its files are kept), 2 for bad input (config, data,
    cache, checkpoint, a missing file). None for anything else: a bug, which keeps its traceback.
    One place for the command line and the bench scripts."""
    import sys

    if isinstance(e, (RankFailedError, NonFiniteLossError)):  # before ValueError: a NaN loss is both
        print(f"{name}: stopped: {e}", file=sys.stderr)
        return 1
    if isinstance(e, (FileNotFoundError, ValueError)):  # ConfigError, CacheMismatchError, CheckpointError too
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    return None
