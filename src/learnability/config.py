"""Frozen config dataclasses and strict `--section.field=value` overrides (one module over 400
lines on purpose: every section, its defaults and its validation read in one place).

Only `build_*` functions and the loop read a config; components take plain arguments. An unknown
key, a wrong type or an impossible value is a `ConfigError` naming the key. The mapping is written
here (about 80 lines) rather than with tyro because it must also load a saved `config.json` with
the same strictness, and accept comma lists (`--arms=uniform,learnability`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import typing
from typing import Any

from learnability.errors import ConfigError  # noqa: F401  (re-exported)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    source: str = "fashion_mnist"  # fashion_mnist | digits | npz | folder | npy
    path: str = ""                 # npz file or image folder; fashion_mnist: folder of idx .gz files
    image_size: int = 32           # folder: images are resized to this square size
    channels: int = 1              # folder: 1 grayscale, 3 RGB
    num_classes: int = 0           # npz: 0 infers max label + 1
    test_fraction: float = 0.2     # sources without a test split hold this fraction out
    reference_size: int = 10000    # clean curated examples held out of the pool for the reference
    pool_size: int = 0             # 0: every remaining training example
    test_size: int = 0             # 0: the whole test split; else its first n (fixed)
    val_size: int = 0              # > 0: hold out n clean training examples and evaluate on them, not on the test split (tuning)
    label_noise: float = 0.4       # symmetric label noise in the pool (eta)
    duplicates: float = 0.0        # fraction of the pool replaced by near-duplicates
    junk: float = 0.0              # fraction of the pool replaced by noise or blank images
    seed: int = 0                  # split and corruption seed
    in_memory: bool = False        # folder / npy: read every image into memory once (faster steps; memory grows with the pool)
    skip_bad: bool = False         # image-text pairs: skip and count bad rows/samples instead of failing
    order: str = "auto"            # shuffles (splits, label noise, stream): permutation (randperm arrays) | bijection (O(1) memory) | auto (bijection for folder / npy)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    learner: str = "cnn_small"
    proxy: str = "mlp_small"       # online proxy; the reference shares its architecture


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    score: str = "learnability"    # see `learnability.scores.list_scores()`; uniform = no selection
    sampler: str = "softmax"       # softmax (Gumbel top-k) | topk | jest (image-text: joint)
    temperature: float = 1.0
    filter_ratio: float = 0.5      # f: super-batch B = b / (1 - f)
    proxy_lr: float = 1e-3
    start: int = 1                 # first step that selects; before it the learner trains on b of the B drawn, uniformly
    end: int = 0                   # last step that selects (0: the last step); after it, uniform, and the proxy stops training


@dataclasses.dataclass(frozen=True)
class ReferenceConfig:
    train_on: str = "curated"      # curated | pool | online (trained alongside, no pre-training)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    cache: bool = True             # cache per-id reference losses (the reference is frozen)
    dir: str = ""                  # where the reference lives; "" = <run>/reference; reused if it matches


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch_size: int = 128          # b, the learner's batch
    lr: float = 1e-3
    warmup: int = 0                # linear learning-rate warm-up over this many updates (0: none)
    schedule: str = "constant"     # after the warm-up: constant | cosine (down to lr * final_lr_fraction at the last step)
    final_lr_fraction: float = 0.0  # cosine: the last update's learning rate as a fraction of train.lr
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    ema: float = 0.99              # evaluate an EMA of the learner's weights with this decay; 0 = raw weights
    eval_every: int = 100
    eval_batch_size: int = 1000
    device: str = "cpu"            # cpu | cuda (bf16 autocast on cuda)
    seed: int = 0
    threads: int = 0               # torch CPU threads (per rank); 0 leaves torch's default (data-parallel: cores / nproc)
    nproc: int = 1                 # data-parallel learner replicas (processes; with backend=ray_train, Ray Train workers):
                                   # each selects b of its own super-batch, so an update trains on nproc * b examples


@dataclasses.dataclass(frozen=True)
class PairsConfig:
    """Image-text (task=clip) settings; sizes and seeds come from `data`."""
    source: str = "synthetic"      # synthetic (compositional Fashion-MNIST, or digits: data.source) | jsonl | shards
    path: str = ""                 # jsonl file or shard pattern ("shards/{000..009}.tar") of the pool
    reference_path: str = ""       # jsonl / shards: the clean curated pairs for the reference
    test_path: str = ""            # jsonl / shards: clean held-out pairs for retrieval
    image_size: int = 40           # user pairs are resized to this; synthetic canvas size
    two_objects: float = 0.0       # synthetic: fraction of images with two garments
    renderings: int = 1            # synthetic: each pool garment rendered K times (own colour, size, position, caption
                                   # and id each): K x data.pool_size pairs, noise applied per pair; reference and test: once
    swapped: float = 0.3           # pool captions swapped with another example's
    uninformative: float = 0.0     # pool captions replaced by junk alt-text
    wrong_attribute: float = 0.0   # pool captions with one attribute wrong
    duplicates: float = 0.0        # pool pairs replaced by exact copies of other pool pairs
    max_len: int = 32              # tokens per caption
    vocab: str = "auto"            # auto (synthetic: every word of its grammar, sorted; else from captions) | captions (the
                                   # training captions' words by count: the vocabulary then varies with the caption noise)
    learner: str = "dual_cnn_small"
    proxy: str = "dual_cnn_tiny"   # online proxy; the reference shares it
    loss: str = "siglip"           # training loss: siglip | clip
    logit_scale_init: float = 10.0  # every dual encoder's initial logit scale (exp of the learnt log-scale)
    learn_scale: bool = True       # learn the logit scale (temperature); false: fixed at logit_scale_init
    logit_bias_init: float = -10.0  # and SigLIP bias; SigLIP's -10 suits batches of thousands, about -log(b) small ones
    actor_loss: str = "contrastive"  # per-example scoring loss: contrastive (within the super-batch) | dot
    n_chunks: int = 16             # JEST: the batch is drawn in this many chunks
    retrieval_size: int = 1000     # clean held-out pairs for retrieval Recall@1/5
    shard_cache: str = ""          # shards: member indexes, and uncompressed copies of .tar.gz/.bz2/.xz shards; "" = <out>/shard-cache


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    every: int = 0                 # write a checkpoint every N steps (0: never); resume with `run --resume DIR`
    keep: int = 2                  # newest checkpoints kept (a damaged newest one falls back to the previous)


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """The actor-learner backend (`backend=ray`, `learnability.distributed`)."""
    address: str = ""              # "" = embedded local Ray on this machine; host:port (or ray://host:port) joins a cluster
    actors: int = 1                # scoring actors, each with its own shard of the pool
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    publish_every: int = 1         # k: the learner publishes the online proxy's weights every k steps
    queue_size: int = 2            # selected batches in flight at once; 1 actor, k=1, queue_size=1 = synchronous
    max_restarts: int = 3          # Ray restarts a dead actor this many times (backend=ray_train: the worker group, which
                                   # resumes from the newest checkpoint)
    cpus_per_worker: float = 1.0   # backend=ray_train: CPUs each Ray Train worker (learner replica) reserves
    num_cpus: int = 0              # embedded Ray: CPUs it may use (0 = all of this machine's)
    object_store_mb: int = 0       # embedded Ray: object store size (0 = Ray's default)
    connect_timeout_s: float = 5.0  # a cluster address that does not answer within this fails the run
    start_timeout_s: float = 300.0  # actors Ray cannot place and start within this fail the run (the cluster is busy)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    selection: SelectionConfig = SelectionConfig()
    reference: ReferenceConfig = ReferenceConfig()
    train: TrainConfig = TrainConfig()
    pairs: PairsConfig = PairsConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    ray: RayConfig = RayConfig()
    backend: str = "local"         # local (the loop; train.nproc > 1: that many processes via torch.distributed.run) |
                                   # ray (scoring actors apart from the learner) | ray_train (train.nproc Ray Train workers)
    task: str = "classify"         # classify | clip
    name: str = ""                 # the arm's name in reports ("" = the score)
    out: str = "runs/run"
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    run: RunConfig = RunConfig()
    arms: tuple[str, ...] = ("uniform", "learnability")
    out: str = "runs/compare"


def _coerce(key: str, raw: Any, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("true", "1", "yes"):
                return True
            if str(raw).lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if typ is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if typ is str:
            if not isinstance(raw, str):
                raise ValueError
            return raw
        if origin is tuple:
            if not isinstance(raw, (list, tuple, str)):
                raise ValueError
            items = raw if isinstance(raw, (list, tuple)) else [s for s in raw.split(",") if s]
            return tuple(_coerce(key, v, typing.get_args(typ)[0]) for v in items)
    except (TypeError, ValueError, OverflowError):
        pass
    else:
        raise ConfigError(f"{key}: unsupported field type {typ}")
    name = getattr(typ, "__name__", str(typ))
    raise ConfigError(f"{key}: expected {name}, got {raw!r}")


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown(key: str, name: str, options: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, options, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(options)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def from_dict(cls: type, d: dict, prefix: str = "") -> Any:
    """Build `cls` from a nested dict (as saved in config.json); strict on keys and types."""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys to values, got {d!r}")
    fields = _fields(cls)
    kwargs = {}
    for k, v in d.items():
        key = prefix + str(k)
        if k not in fields:
            raise _unknown(key, k, list(fields))
        typ = fields[k]
        if dataclasses.is_dataclass(typ):
            if not isinstance(v, dict):
                raise ConfigError(f"{key}: expected a section (mapping), got {v!r}")
            kwargs[k] = from_dict(typ, v, key + ".")
        else:
            kwargs[k] = _coerce(key, v, typ)
    return cls(**kwargs)


def apply_overrides(cfg: Any, args: list[str]) -> Any:
    """Apply `--section.field=value` overrides (also `--section.field value`) to a frozen config."""
    i = 0
    while i < len(args):
        arg = args[i]
        if not isinstance(arg, str) or not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; overrides look like --section.field=value")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            key, raw = arg[2:], args[i + 1]
            i += 1
        else:
            raise ConfigError(f"{arg}: missing a value (use --key=value)")
        cfg = _set(cfg, key.split("."), raw, key)
        i += 1
    return cfg


def _set(cfg: Any, path: list[str], raw: str, key: str) -> Any:
    fields = _fields(type(cfg))
    head = path[0]
    if head not in fields:
        raise _unknown(key, head, list(fields))
    typ = fields[head]
    if dataclasses.is_dataclass(typ):
        if len(path) == 1:
            raise ConfigError(f"{key} is a section; set one of its fields, e.g. --{key}.{next(iter(_fields(typ)))}=...")
        return dataclasses.replace(cfg, **{head: _set(getattr(cfg, head), path[1:], raw, key)})
    if len(path) > 1:
        raise ConfigError(f"unknown config key {key!r}: {head} is not a section")
    return dataclasses.replace(cfg, **{head: _coerce(key, raw, typ)})


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save(cfg: Any, path: str) -> None:
    from learnability.io import atomic_write_text

    atomic_write_text(path, json.dumps(to_dict(cfg), indent=2) + "\n")


def load_for_resume(folder: str, filename: str, overrides: list[str], writer: str) -> dict:
    """The JSON `folder/filename` saved by `writer` (e.g. `learnability run`), for `--resume`;
    only `--progress` may be overridden on resume."""
    path = os.path.join(folder, filename)
    if not os.path.isfile(path):
        raise ConfigError(f"--resume {folder}: no {filename} there; is it a folder written by `{writer}`?")
    extra = [a for a in overrides if not a.startswith("--progress")]
    if extra:
        raise ConfigError(f"--resume continues with the saved {filename}; drop {' '.join(extra)}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--resume {folder}: {path} is not valid JSON ({e}); restore it, or start a new "
                          f"run into another folder (--out=NEW_DIR)") from e


def data_order(d: DataConfig) -> str:
    """How the data is shuffled: `data.order` resolved for `data.source` (`data.sources.resolve_order`)."""
    from learnability.data.sources import resolve_order

    return resolve_order(d.order, d.source)


def validate(cfg: RunConfig) -> None:
    """Check values that no type can: impossible sizes, unknown names. Raises ConfigError."""
    from learnability.data.sources import SOURCES
    from learnability.models import list_models
    from learnability.scores import list_scores
    from learnability.selection import list_samplers

    t, s, r, d = cfg.train, cfg.selection, cfg.reference, cfg.data
    checks = [
        (t.steps >= 1, "train.steps", "must be >= 1"),
        (t.batch_size >= 1, "train.batch_size", "must be >= 1"),
        (t.eval_every >= 1, "train.eval_every", "must be >= 1"),
        (t.eval_batch_size >= 1, "train.eval_batch_size", "must be >= 1"),
        (0 < t.lr < math.inf, "train.lr", "must be a finite number > 0"),
        (t.warmup >= 0, "train.warmup", "must be >= 0 (0: no warm-up)"),
        (t.schedule in ("constant", "cosine"), "train.schedule", "must be constant or cosine"),
        (0.0 <= t.final_lr_fraction <= 1.0, "train.final_lr_fraction", "must be in [0, 1]"),
        (0 <= t.weight_decay < math.inf, "train.weight_decay", "must be a finite number >= 0"),
        (0 <= t.label_smoothing < 1, "train.label_smoothing", "must be in [0, 1)"),
        (t.threads >= 0, "train.threads", "must be >= 0 (0 leaves torch's default)"),
        (t.nproc >= 1, "train.nproc", "must be >= 1 (the learner's data-parallel processes)"),
        (not (t.nproc > 1 and cfg.backend == "ray"), "train.nproc",
         "> 1 is not supported with backend=ray (its learner is one process fed by scoring actors); use backend=local "
         "(torch.distributed on this machine) or backend=ray_train (Ray Train workers)"),
        (0.0 <= t.ema < 1.0, "train.ema", "must be in [0, 1) (0 turns the EMA off)"),
        (t.device in ("cpu", "cuda") or t.device.startswith("cuda:"), "train.device", "must be cpu or cuda"),
        (0.0 <= s.filter_ratio < 1.0, "selection.filter_ratio", "must be in [0, 1) (B = b / (1 - f))"),
        (s.temperature > 0 and s.temperature != float("inf"), "selection.temperature", "must be a finite number > 0"),
        (0 < s.proxy_lr < math.inf, "selection.proxy_lr", "must be a finite number > 0"),
        (s.start >= 1, "selection.start", "must be >= 1 (the first step that selects)"),
        (s.end == 0 or s.end >= s.start, "selection.end", f"must be 0 (to the last step) or >= selection.start={s.start}"),
        (s.score in list_scores(), "selection.score", f"must be one of {', '.join(list_scores())}"),
        (s.sampler in list_samplers(), "selection.sampler", f"must be one of {', '.join(list_samplers())}"),
        (cfg.model.learner in list_models(), "model.learner", f"must be one of {', '.join(list_models())}"),
        (cfg.model.proxy in list_models(), "model.proxy", f"must be one of {', '.join(list_models())}"),
        (r.train_on in ("curated", "pool", "online"), "reference.train_on", "must be curated, pool or online"),
        (r.epochs >= 1, "reference.epochs", "must be >= 1"),
        (r.batch_size >= 1, "reference.batch_size", "must be >= 1"),
        (0 < r.lr < math.inf, "reference.lr", "must be a finite number > 0"),
        (d.reference_size >= 0, "data.reference_size", "must not be negative (data sizes)"),
        (d.pool_size >= 0, "data.pool_size", "must not be negative (data sizes; 0 = every remaining example)"),
        (d.test_size >= 0, "data.test_size", "must not be negative (data sizes; 0 = the whole test split)"),
        (d.val_size >= 0, "data.val_size", "must not be negative (0: evaluate on the test split)"),
        (d.num_classes >= 0, "data.num_classes", "must not be negative (0 infers it from the labels)"),
        (d.image_size >= 1, "data.image_size", "must be >= 1"),
        (d.channels in (1, 3), "data.channels", "must be 1 (grayscale) or 3 (RGB)"),
        (0 < d.test_fraction < 1, "data.test_fraction", "must be in (0, 1)"),
        (d.source in SOURCES, "data.source", f"must be one of {', '.join(SOURCES)}"),
        (d.order in ("auto", "permutation", "bijection"), "data.order", "must be auto, permutation or bijection"),
        (not (data_order(d) == "bijection" and (d.duplicates or d.junk)), "data.order",
         "bijection (the default for folder / npy sources) supports label noise only; data.duplicates and data.junk "
         "rewrite images: set --data.order=permutation (and --data.in_memory=true for a folder / npy source)"),
        (cfg.checkpoint.every >= 0, "checkpoint.every", "must be >= 0 (0: no checkpoints)"),
        (cfg.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1"),
    ] + [(0 <= getattr(d, k) < 1, f"data.{k}", "must be in [0, 1)") for k in ("label_noise", "duplicates", "junk")]
    if cfg.task == "clip":
        from learnability.dual import list_dual_models

        p = cfg.pairs
        checks += [
            (p.source in ("synthetic", "jsonl", "shards"), "pairs.source", "must be synthetic, jsonl or shards"),
            (p.source != "synthetic" or cfg.data.source in ("fashion_mnist", "digits"), "data.source",
             "built-in pairs (pairs.source=synthetic) are rendered from fashion_mnist or digits"),
            (p.learner in list_dual_models(), "pairs.learner", f"must be one of {', '.join(list_dual_models())}"),
            (p.proxy in list_dual_models(), "pairs.proxy", f"must be one of {', '.join(list_dual_models())}"),
            (p.loss in ("siglip", "clip"), "pairs.loss", "must be siglip or clip"),
            (p.vocab in ("auto", "captions"), "pairs.vocab", "must be auto or captions"),
            (p.actor_loss in ("dot", "contrastive"), "pairs.actor_loss", "must be dot or contrastive"),
            (p.n_chunks >= 1, "pairs.n_chunks", "must be >= 1"),
            (0 < p.logit_scale_init < math.inf, "pairs.logit_scale_init", "must be a finite number > 0"),
            (-math.inf < p.logit_bias_init < math.inf, "pairs.logit_bias_init", "must be a finite number"),
            (p.max_len >= 3, "pairs.max_len", "must be >= 3"),
            (p.image_size >= 1, "pairs.image_size", "must be >= 1"),
            (p.retrieval_size >= 1, "pairs.retrieval_size", "must be >= 1"),
            (0 <= p.two_objects <= 1, "pairs.two_objects", "must be in [0, 1]"),
            (p.renderings >= 1, "pairs.renderings", "must be an integer >= 1 (renderings of each pool garment; 1 = once)"),
            (p.renderings == 1 or p.source == "synthetic", "pairs.renderings",
             f"renders the built-in pairs several times: with pairs.source={p.source} leave it at 1"),
            *[(0 <= getattr(p, k) < 1, f"pairs.{k}", "must be in [0, 1)") for k in ("swapped", "uninformative", "wrong_attribute", "duplicates")],
            (p.swapped + p.uninformative + p.wrong_attribute + p.duplicates < 1, "pairs.swapped/uninformative/wrong_attribute/duplicates",
             "must add up to below 1 (they corrupt disjoint examples)"),
            (s.sampler not in list_samplers("joint") or t.batch_size % p.n_chunks == 0, "pairs.n_chunks",
             f"must divide train.batch_size={t.batch_size} for joint selection (JEST draws equal chunks)"),
            (s.score not in ("oracle", "oracle_graded") or (p.source == "synthetic" and s.sampler not in list_samplers("joint")), "selection.score",
             "oracle reads the built-in pairs' ground-truth noise and ranks single pairs: use pairs.source=synthetic "
             "and a flat sampler (softmax or topk)"),
        ]
        checks = [c for c in checks if c[1] not in ("selection.sampler",)]
        checks.append((s.sampler in list_samplers("all"), "selection.sampler",
                       f"must be one of {', '.join(list_samplers('all'))}"))
    else:
        from learnability.tasks import list_tasks

        if cfg.task not in list_tasks():
            raise ConfigError(f"task must be one of {', '.join(list_tasks())}; got {cfg.task!r}")
    if cfg.backend not in ("local", "ray", "ray_train"):
        raise ConfigError(f"backend must be local, ray or ray_train; got {cfg.backend!r}")
    if cfg.backend == "ray":
        checks += _ray_checks(cfg)
    for ok, key, why in checks:
        if not ok:
            raise ConfigError(f"{key} {why}")
    if s.score != "uniform" and d.reference_size == 0 and r.train_on == "curated":
        raise ConfigError("reference.train_on=curated needs data.reference_size > 0")


def _ray_checks(cfg: RunConfig) -> list[tuple[bool, str, str]]:
    from learnability.scores import get_score, list_scores

    q, score = cfg.ray, cfg.selection.score
    return [
        (q.actors >= 1, "ray.actors", "must be >= 1"),
        (q.cpus_per_actor >= 0 and q.gpus_per_actor >= 0, "ray.cpus_per_actor/gpus_per_actor", "must not be negative"),
        (q.publish_every >= 1, "ray.publish_every", "must be >= 1"),
        (q.queue_size >= 1, "ray.queue_size", "must be >= 1"),
        (q.max_restarts >= 0, "ray.max_restarts", "must be >= 0"),
        (q.num_cpus >= 0 and q.object_store_mb >= 0, "ray.num_cpus/object_store_mb", "must not be negative"),
        (q.connect_timeout_s > 0, "ray.connect_timeout_s", "must be > 0"),
        (q.start_timeout_s > 0, "ray.start_timeout_s", "must be > 0"),
        (cfg.reference.train_on != "online", "reference.train_on",
         "online is not supported with backend=ray (the reference would train on the learner); use curated or pool, or backend=local"),
        (not (score in list_scores() and "learner" in get_score(score).needs), "selection.score",
         "scores that use the learner's own loss (rho) need the learner on every actor; use backend=local"),
        ((cfg.selection.start, cfg.selection.end) == (1, 0), "selection.start/end",
         "a selection window is not supported with backend=ray (actors select every batch); use backend=local"),
    ]


def super_batch(b: int, f: float) -> int:
    """Super-batch size B = b / (1 - f), rounded to the nearest integer (at least b)."""
    return max(b, round(b / (1.0 - f)))
