"""Actor-learner mode on Ray: scoring actors apart from the learner (`backend=ray`).

`run_ray(cfg)` trains like `learnability.loop.run` but scores and selects on N Ray actors, each
reading its own shard of the pool; selected batches reach the learner through a bounded FIFO of
in-flight requests, and the learner publishes the online proxy's weights every k steps through
Ray's object store. Ray is imported only when a run starts, so the package works without it
(`pip install 'learnability[ray]'`).
"""

from __future__ import annotations

from learnability.distributed.learner import run_ray

__all__ = ["run_ray"]
