"""Ray plumbing: join or start Ray, spawn scoring actors, and the bounded FIFO of selected batches.

The queue is a FIFO of in-flight `produce` requests, at most `queue_size` of them, assigned to the
actors round-robin. Ray runs one actor's requests in order, so each actor works ahead of the
learner by up to its share of the queue; the learner consumes in request order, which makes a run
independent of timing. Each request carries the newest published weights `[version, ObjectRef]`.

When an actor dies, Ray restarts it (`max_restarts`); the learner restores it to the batch after
the last one it received from it and re-issues its lost requests, so no selected batch is
duplicated or dropped; every restart and lost request is counted. A resumed run goes through the
same door: `BatchQueue.state_dict()` holds where each actor stands and the requests in flight with
the weights each carried, and `load_state_dict` puts fresh actors back there and re-issues them.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import socket
from typing import Any

from learnability.config import ConfigError, RayConfig


def _host_port(address: str) -> tuple[str, int]:
    a = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = a.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"ray.address={address!r}: expected host:port (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001), "
                          "or leave it empty for an embedded local Ray")
    return host, int(port)


def check_reachable(address: str, timeout_s: float) -> None:
    """Raise ConfigError unless something accepts TCP connections at `address` within `timeout_s`."""
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(f"ray.address={address}: no Ray cluster answers at {host}:{port} within {timeout_s:g}s ({e}); "
                          "start one there with `ray start --head`, fix the address, or leave ray.address empty "
                          "for an embedded local Ray") from e


def connect(q: RayConfig) -> bool:
    """Join the cluster at `q.address`, or start an embedded local Ray. Returns whether this call
    started Ray (and so must shut it down); an already initialised Ray is reused."""
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False
    if q.address and q.address != "auto":
        check_reachable(q.address, q.connect_timeout_s)
    if q.address:
        _join(q.address, q.connect_timeout_s)
    else:
        embedded_env()
        import ray

        ray.init(num_cpus=q.num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 configure_logging=False, object_store_memory=q.object_store_mb * 2**20 if q.object_store_mb else None)
    return True


def embedded_env() -> None:
    """Settings for a Ray this process starts, unless the user set them: worker processes at the
    driver's CPU priority. Ray runs its workers at niceness 15 by default, so on a busy machine
    (other runs, a test suite) the scoring actors barely get the CPU: seen here as actors that took
    over two minutes to start and a learner stalled waiting for them."""
    os.environ.setdefault("RAY_worker_niceness", "0")


def _join(address: str, timeout_s: float) -> None:
    """`ray.init(address=...)`; a ConfigError when something answers at the address but no Ray
    cluster joins. Ray reads its connection timeouts once, when first imported: unless the user set
    them, they are bounded by `timeout_s` here (Ray's defaults wait ~20 s per attempt, over a
    minute in all), which works when this is the process's first Ray import (the CLI's case)."""
    import math
    import sys

    if "ray" not in sys.modules:
        wait = str(max(1, math.ceil(timeout_s)))
        for key in ("RAY_gcs_rpc_server_connect_timeout_s", "RAY_py_gcs_connect_timeout_s", "RAY_gcs_server_port_wait_time_s"):
            os.environ.setdefault(key, wait)
    import ray

    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError) as e:
        raise ConfigError(f"ray.address={address}: something answers there but no Ray cluster joined within "
                          f"~{timeout_s:g}s ({str(e).splitlines()[0]}); check the address and port (the head's "
                          "GCS port, 6379 by default, or ray://host:10001 for Ray Client)") from e


def check_resources(q: RayConfig) -> None:
    """ConfigError when the cluster cannot place all actors (they would wait forever)."""
    import ray

    have = ray.cluster_resources()
    for key, per in (("CPU", q.cpus_per_actor), ("GPU", q.gpus_per_actor)):
        if per * q.actors > have.get(key, 0.0) + 1e-9:
            raise ConfigError(f"ray.actors={q.actors} x ray.{key.lower()}s_per_actor={per:g} needs {per * q.actors:g} {key}s "
                              f"but the Ray cluster has {have.get(key, 0.0):g}; use fewer actors or fewer {key}s each")


def spawn(q: RayConfig, actor_cls: type, args: list[tuple[Any, ...]]) -> list:
    """One Ray actor per argument tuple, restarted by Ray up to `q.max_restarts` times."""
    import ray

    remote = ray.remote(actor_cls).options(num_cpus=q.cpus_per_actor, num_gpus=q.gpus_per_actor,
                                           max_restarts=q.max_restarts, max_task_retries=0)
    return [remote.remote(*a) for a in args]


@dataclasses.dataclass
class Request:
    actor: int
    seq: int
    future: Any
    weights: list  # [version, ObjectRef] it carried


class BatchQueue:
    """The bounded FIFO of selected batches between the actors and the learner."""

    def __init__(self, actors: list, queue_size: int, max_restarts: int, restart_timeout_s: float = 120.0):
        import ray

        self.ray, self.actors, self.size, self.max_restarts = ray, actors, queue_size, max_restarts
        self.restart_timeout_s = restart_timeout_s
        self.next_seq = [0] * len(actors)                       # next batch to request, per actor
        self.received: list[tuple[int, Any]] = [(0, None)] * len(actors)  # (seq, generator) after the last received
        self.pending: collections.deque[Request] = collections.deque()
        self.turn, self.version, self.weights = 0, -1, None
        self.restarts, self.lost = [0] * len(actors), 0
        self.events: list[dict] = []

    def publish(self, version: int, state: dict) -> None:
        """Make `state` the newest proxy weights; requests issued from now on carry it."""
        self.version, self.weights = version, [version, self.ray.put(state)]

    def _issue(self, a: int, seq: int, weights: list | None = None) -> Request:
        weights = weights or self.weights
        return Request(a, seq, self.actors[a].produce.remote(seq, weights), weights)

    def fill(self) -> None:
        while len(self.pending) < self.size:
            a = self.turn % len(self.actors)
            self.turn += 1
            self.pending.append(self._issue(a, self.next_seq[a]))
            self.next_seq[a] += 1

    def get(self, step: int) -> dict:
        """The next selected batch in request order (blocks); restores and re-issues around a dead actor."""
        from ray.exceptions import RayActorError

        self.fill()
        while True:
            head = self.pending[0]
            try:
                out = self.ray.get(head.future)
            except RayActorError as e:
                self._recover(head.actor, step, e)
                continue
            self.pending.popleft()
            self.received[head.actor] = (head.seq + 1, out["generator"])
            return out

    def _recover(self, a: int, step: int, err: Exception) -> None:
        """Actor `a` died: wait for Ray to restart it, restore it to the batch after the last one
        received from it, and re-issue its lost requests in their places in the queue."""
        import time

        from ray.exceptions import ActorUnavailableError, RayActorError

        self.restarts[a] += 1
        if self.restarts[a] > self.max_restarts:
            raise RuntimeError(f"scoring actor {a} died {self.restarts[a]} times (ray.max_restarts={self.max_restarts}): {err}") from err
        deadline = time.monotonic() + self.restart_timeout_s
        while True:
            try:
                pid = self.ray.get(self.actors[a].restore.remote(*self.received[a]))
                break
            except ActorUnavailableError:  # still restarting
                if time.monotonic() > deadline:
                    raise RuntimeError(f"scoring actor {a} did not come back within {self.restart_timeout_s:g}s") from err
                time.sleep(0.05)
            except RayActorError as e:  # dead for good: restarts used up
                raise RuntimeError(f"scoring actor {a} died and Ray could not restart it (ray.max_restarts="
                                   f"{self.max_restarts}): {e}") from e
        lost = 0
        for i, r in enumerate(self.pending):
            if r.actor == a:
                self.pending[i] = self._issue(a, r.seq)
                lost += 1
        self.lost += lost
        self.events.append({"step": step, "actor": a, "requests_reissued": lost, "resumed_at_batch": self.received[a][0],
                            "pid": pid})

    def state_dict(self) -> dict:
        """Where the queue stands between two `get`s: per actor the (seq, generator) after the last
        batch received, the requests in flight (actor, seq, weights version) in order, the proxy
        weights of every version they or the next request carry, and the restart counts."""
        refs = {r.weights[0]: r.weights[1] for r in self.pending}
        refs[self.version] = self.weights[1]
        return {"received": [list(r) for r in self.received], "version": self.version,
                "pending": [[r.actor, r.seq, r.weights[0]] for r in self.pending],
                "weights": {v: self.ray.get(ref) for v, ref in refs.items()},
                "restarts": list(self.restarts), "lost": self.lost, "events": list(self.events)}

    def load_state_dict(self, state: dict) -> None:
        """Put the queue and its (fresh) actors where `state` was taken: each actor restored to the
        batch after the last one received, the in-flight requests re-issued in their order with the
        weights each carried, so the learner gets the batches the uninterrupted run got."""
        if len(state["received"]) != len(self.actors):
            raise ValueError(f"the saved queue has {len(state['received'])} actors, this run {len(self.actors)}")
        self.received = [(int(seq), gen) for seq, gen in state["received"]]
        self.ray.get([actor.restore.remote(*self.received[a]) for a, actor in enumerate(self.actors)])
        weights = {int(v): [int(v), self.ray.put(w)] for v, w in state["weights"].items()}
        self.version, self.weights = int(state["version"]), weights[int(state["version"])]
        self.next_seq = [seq for seq, _ in self.received]
        self.turn = sum(self.next_seq)
        self.pending.clear()
        for a, seq, version in state["pending"]:
            if (a, seq) != (self.turn % len(self.actors), self.next_seq[a]):
                raise ValueError(f"the saved queue's request for batch {seq} of actor {a} is out of order")
            self.pending.append(self._issue(a, seq, weights[int(version)]))
            self.turn, self.next_seq[a] = self.turn + 1, seq + 1
        self.restarts, self.lost, self.events = list(state["restarts"]), int(state["lost"]), list(state["events"])

    def close(self) -> int:
        """Forget what is still in flight (the actors are killed next, which ends it: `ray.cancel`
        here could block a Ctrl-C'd run's shutdown); returns how many requests were prefetched
        and never used."""
        n = len(self.pending)
        self.pending.clear()
        return n
