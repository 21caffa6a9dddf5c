"""Build the image-text pool, curated reference set and test set from a `RunConfig`."""

from __future__ import annotations

import os

from learnability.pairs.pairset import PairSplits
from learnability.pairs.readers import JsonlPairs, collect
from learnability.pairs.synthetic import synthetic_pairs
from learnability.pairs.tarindex import lazy_pairs


def build_pairs(cfg) -> tuple[PairSplits, int]:
    """Returns the splits and how many bad rows were skipped (`data.skip_bad`). The built-in pairs
    get the configured caption noise in the pool; a user's pairs are taken as they are (web data
    brings its own noise), from `pairs.path` (pool), `pairs.reference_path` (clean, curated) and
    `pairs.test_path` (clean, held out). Shards are not loaded: their images are read from the
    shards when a batch needs them (`pairs.tarindex`; compressed shards through an uncompressed
    copy, and every shard's member index, in `pairs.shard_cache`)."""
    p, d = cfg.pairs, cfg.data
    if p.source == "synthetic":
        return synthetic_pairs(source=d.source, path=d.path, reference_size=d.reference_size, pool_size=d.pool_size,
                               test_size=d.test_size, val_size=d.val_size, test_fraction=d.test_fraction, canvas=p.image_size, two_objects=p.two_objects,
                               swapped=p.swapped, uninformative=p.uninformative, wrong_attribute=p.wrong_attribute,
                               duplicates=p.duplicates, renderings=p.renderings, seed=d.seed), 0
    if d.val_size:
        raise ValueError(f"data.val_size={d.val_size} holds out built-in pairs for validation; pairs.source={p.source} "
                         "brings its own: pass your validation pairs as --pairs.test_path while tuning, and leave "
                         "data.val_size at 0")
    if p.renderings != 1:
        raise ValueError(f"pairs.renderings={p.renderings} renders the built-in pairs several times; "
                         f"pairs.source={p.source} brings its own images: leave pairs.renderings at 1")
    parts, skipped = [], 0
    cache = p.shard_cache or os.path.join(cfg.out, "shard-cache")
    for key in ("path", "reference_path", "test_path"):
        where = getattr(p, key)
        if not where:
            raise ValueError(f"pairs.source={p.source} needs --pairs.{key} (pool, clean reference and clean test pairs)")
        if p.source == "shards":  # images stay in the shards and are read when a batch needs them
            pairs, bad = lazy_pairs(where, image_size=p.image_size, skip_bad=d.skip_bad, index_dir=cache)
            parts.append(pairs)
            skipped += bad
            continue
        r = JsonlPairs(where, image_size=p.image_size, skip_bad=d.skip_bad)
        parts.append(collect(r))
        skipped += r.skipped
    return PairSplits(pool=parts[0], reference=parts[1], test=parts[2]), skipped
