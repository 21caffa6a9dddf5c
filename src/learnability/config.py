"""Frozen config dataclasses and strict `--section.field=value` overrides.

Only `build_*` functions and the loop read a config; components take plain arguments. An unknown
key, a wrong type or an impossible value is a `ConfigError` naming the key. The mapping is written
here (about 80 lines) rather than with tyro because it must also load a saved `config.json` with
the same strictness, and accept comma lists (`--arms=uniform,learnability`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from typing import Any


class ConfigError(ValueError):
    """A config key or value the user must fix."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    source: str = "fashion_mnist"  # fashion_mnist | digits | npz | folder
    path: str = ""                 # npz file or image folder; fashion_mnist: folder of idx .gz files
    image_size: int = 32           # folder: images are resized to this square size
    channels: int = 1              # folder: 1 grayscale, 3 RGB
    num_classes: int = 0           # npz: 0 infers max label + 1
    test_fraction: float = 0.2     # sources without a test split hold this fraction out
    reference_size: int = 10000    # clean curated examples held out of the pool for the reference
    pool_size: int = 0             # 0: every remaining training example
    test_size: int = 0             # 0: the whole test split; else its first n (fixed)
    label_noise: float = 0.4       # symmetric label noise in the pool (eta)
    duplicates: float = 0.0        # fraction of the pool replaced by near-duplicates
    junk: float = 0.0              # fraction of the pool replaced by noise or blank images
    seed: int = 0                  # split and corruption seed


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    learner: str = "cnn_small"
    proxy: str = "mlp_small"       # online proxy; the reference shares its architecture


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    score: str = "learnability"    # see `learnability.scores.list_scores()`; uniform = no selection
    sampler: str = "softmax"       # softmax (Gumbel top-k) | topk
    temperature: float = 1.0
    filter_ratio: float = 0.5      # f: super-batch B = b / (1 - f)
    proxy_lr: float = 1e-3


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
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    ema: float = 0.99              # evaluate an EMA of the learner's weights with this decay; 0 = raw weights
    eval_every: int = 100
    eval_batch_size: int = 1000
    device: str = "cpu"            # cpu | cuda (bf16 autocast on cuda)
    seed: int = 0
    threads: int = 0               # torch CPU threads; 0 leaves torch's default


@dataclasses.dataclass(frozen=True)
class PairsConfig:
    """Image-text (task=clip) settings; sizes and seeds come from `data`."""
    source: str = "synthetic"      # synthetic (compositional Fashion-MNIST) | jsonl | shards
    path: str = ""                 # jsonl file or shard pattern ("shards/{000..009}.tar") of the pool
    reference_path: str = ""       # jsonl / shards: the clean curated pairs for the reference
    test_path: str = ""            # jsonl / shards: clean held-out pairs for retrieval
    image_size: int = 40           # user pairs are resized to this; synthetic canvas size
    skip_bad: bool = False         # skip and count bad rows instead of failing
    two_objects: float = 0.0       # synthetic: fraction of images with two garments
    swapped: float = 0.3           # pool captions swapped with another example's
    uninformative: float = 0.0     # pool captions replaced by junk alt-text
    wrong_attribute: float = 0.0   # pool captions with one attribute wrong
    max_len: int = 32              # tokens per caption
    learner: str = "dual_cnn_small"
    proxy: str = "dual_cnn_tiny"   # online proxy; the reference shares it
    loss: str = "siglip"           # training loss: siglip | clip
    actor_loss: str = "contrastive"  # per-example scoring loss: contrastive (within the super-batch) | dot
    n_chunks: int = 16             # JEST: the batch is drawn in this many chunks
    retrieval_size: int = 1000     # clean held-out pairs for retrieval Recall@1/5


@dataclasses.dataclass(frozen=True)
class RunConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    selection: SelectionConfig = SelectionConfig()
    reference: ReferenceConfig = ReferenceConfig()
    train: TrainConfig = TrainConfig()
    pairs: PairsConfig = PairsConfig()
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
            items = raw if isinstance(raw, (list, tuple)) else [s for s in str(raw).split(",") if s]
            return tuple(_coerce(key, v, typing.get_args(typ)[0]) for v in items)
    except (TypeError, ValueError):
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
    fields = _fields(cls)
    kwargs = {}
    for k, v in d.items():
        key = prefix + k
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
        if not arg.startswith("--"):
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



def validate(cfg: RunConfig) -> None:
    """Check values that no type can: impossible sizes, unknown names. Raises ConfigError."""
    from learnability.models import list_models
    from learnability.scores import list_scores
    from learnability.selection import list_samplers

    t, s, r, d = cfg.train, cfg.selection, cfg.reference, cfg.data
    checks = [
        (t.steps >= 1, "train.steps", "must be >= 1"),
        (t.batch_size >= 1, "train.batch_size", "must be >= 1"),
        (t.eval_every >= 1, "train.eval_every", "must be >= 1"),
        (t.eval_batch_size >= 1, "train.eval_batch_size", "must be >= 1"),
        (t.lr > 0, "train.lr", "must be > 0"),
        (0.0 <= t.ema < 1.0, "train.ema", "must be in [0, 1) (0 turns the EMA off)"),
        (t.device in ("cpu", "cuda") or t.device.startswith("cuda:"), "train.device", "must be cpu or cuda"),
        (0.0 <= s.filter_ratio < 1.0, "selection.filter_ratio", "must be in [0, 1) (B = b / (1 - f))"),
        (s.temperature > 0 and s.temperature != float("inf"), "selection.temperature", "must be a finite number > 0"),
        (s.score in list_scores(), "selection.score", f"must be one of {', '.join(list_scores())}"),
        (s.sampler in list_samplers(), "selection.sampler", f"must be one of {', '.join(list_samplers())}"),
        (cfg.model.learner in list_models(), "model.learner", f"must be one of {', '.join(list_models())}"),
        (cfg.model.proxy in list_models(), "model.proxy", f"must be one of {', '.join(list_models())}"),
        (r.train_on in ("curated", "pool", "online"), "reference.train_on", "must be curated, pool or online"),
        (r.epochs >= 1 and r.batch_size >= 1, "reference.epochs/batch_size", "must be >= 1"),
        (d.reference_size >= 0 and d.pool_size >= 0 and d.test_size >= 0, "data sizes", "must not be negative"),
    ]
    if cfg.task == "clip":
        from learnability.dual import list_dual_models
        from learnability.joint import list_joint_samplers

        p = cfg.pairs
        checks += [
            (p.source in ("synthetic", "jsonl", "shards"), "pairs.source", "must be synthetic, jsonl or shards"),
            (p.learner in list_dual_models(), "pairs.learner", f"must be one of {', '.join(list_dual_models())}"),
            (p.proxy in list_dual_models(), "pairs.proxy", f"must be one of {', '.join(list_dual_models())}"),
            (p.loss in ("siglip", "clip"), "pairs.loss", "must be siglip or clip"),
            (p.actor_loss in ("dot", "contrastive"), "pairs.actor_loss", "must be dot or contrastive"),
            (p.n_chunks >= 1, "pairs.n_chunks", "must be >= 1"),
            (p.max_len >= 3, "pairs.max_len", "must be >= 3"),
            (s.sampler not in list_joint_samplers() or t.batch_size % p.n_chunks == 0, "pairs.n_chunks",
             f"must divide train.batch_size={t.batch_size} for joint selection (JEST draws equal chunks)"),
        ]
        checks = [c for c in checks if c[1] not in ("selection.sampler",)]
        checks.append((s.sampler in list_samplers() + list_joint_samplers(), "selection.sampler",
                       f"must be one of {', '.join(list_samplers() + list_joint_samplers())}"))
    elif cfg.task != "classify":
        raise ConfigError(f"task must be classify or clip; got {cfg.task!r}")
    for ok, key, why in checks:
        if not ok:
            raise ConfigError(f"{key} {why}")
    if s.score != "uniform" and d.reference_size == 0 and r.train_on == "curated":
        raise ConfigError("reference.train_on=curated needs data.reference_size > 0")


def super_batch(b: int, f: float) -> int:
    """Super-batch size B = b / (1 - f), rounded to the nearest integer (at least b)."""
    return max(b, round(b / (1.0 - f)))
