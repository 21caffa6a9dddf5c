"""Build the pool, the curated reference set and the test set from a `config.DataConfig`.

The data layer imports no config: `build_data` reads the fields it needs (`DataSettings`)."""

from __future__ import annotations

from typing import Protocol

from learnability.data.columns import LazyColumn
from learnability.data.corrupt import corrupt
from learnability.data.imageset import ImageSet
from learnability.data.sources import load_source, resolve_order
from learnability.data.splits import Splits, make_splits


class DataSettings(Protocol):
    """The fields of `config.DataConfig` that `build_data` reads (see there for their meaning)."""
    source: str
    path: str
    image_size: int
    channels: int
    num_classes: int
    test_fraction: float
    reference_size: int
    pool_size: int
    test_size: int
    val_size: int
    label_noise: float
    duplicates: float
    junk: float
    seed: int
    in_memory: bool
    order: str


def build_data(cfg: DataSettings) -> Splits:
    """Load the source, split it, and corrupt the pool only (reference and test stay clean), all
    shuffled by `data.order` (`sources.resolve_order`). `data.val_size` > 0: the returned `test` is
    a clean validation split held out of the training examples (`splits.make_splits`)."""
    order = resolve_order(cfg.order, cfg.source)
    train, test = load_source(cfg.source, path=cfg.path, image_size=cfg.image_size, channels=cfg.channels,
                              test_fraction=cfg.test_fraction, num_classes=cfg.num_classes, seed=cfg.seed, order=order)
    reference_size = cfg.reference_size
    if cfg.source != "fashion_mnist" and reference_size >= len(train):
        raise ValueError(f"data.reference_size={reference_size} leaves no pool of the {len(train)} training "
                         f"examples of {cfg.source}; lower it")
    splits = make_splits(train, test, reference_size=reference_size, pool_size=cfg.pool_size, seed=cfg.seed, order=order,
                         val_size=cfg.val_size)
    del train  # its per-id arrays are copied into the splits; a big pool should not hold them twice
    if cfg.test_size:
        splits.test = splits.test.subset(slice(0, cfg.test_size))
    if cfg.in_memory:  # read every image once: faster steps, memory grows with the pool
        splits = Splits(*(in_memory(s) for s in (splits.pool, splits.reference, splits.test)))
    splits.pool = corrupt(splits.pool, label_noise=cfg.label_noise, duplicates=cfg.duplicates, junk=cfg.junk,
                          seed=cfg.seed + 1, order=order)
    return splits


def in_memory(data: ImageSet) -> ImageSet:
    """`data` with its images and columns read into tensors (itself when they already are)."""
    if not data.lazy and not isinstance(data.y, LazyColumn):
        return data
    x = data.x[:] if data.lazy else data.x
    y, ids, corruption, true_y = (c.materialise() if isinstance(c, LazyColumn) else c
                                  for c in (data.y, data.ids, data.corruption, data.true_y))
    return ImageSet(x, y, ids, data.num_classes, corruption, true_y)
