"""Build the image-text pool, curated reference set and test set from a `RunConfig`."""

from __future__ import annotations

from learnability.pairs.pairset import PairSplits
from learnability.pairs.readers import JsonlPairs, ShardPairs, collect
from learnability.pairs.shards import expand_shards
from learnability.pairs.synthetic import synthetic_pairs
from learnability.pairs.tarindex import is_plain_tar, lazy_pairs


def build_pairs(cfg) -> tuple[PairSplits, int]:
    """Returns the splits and how many bad rows were skipped (`data.skip_bad`). The built-in pairs
    get the configured caption noise in the pool; a user's pairs are taken as they are (web data
    brings its own noise), from `pairs.path` (pool), `pairs.reference_path` (clean, curated) and
    `pairs.test_path` (clean, held out). Uncompressed tar shards are not loaded: their images are
    read from the shards when a batch needs them (`pairs.tarindex`)."""
    p, d = cfg.pairs, cfg.data
    if p.source == "synthetic":
        return synthetic_pairs(path=d.path, reference_size=d.reference_size, pool_size=d.pool_size,
                               test_size=d.test_size, canvas=p.image_size, two_objects=p.two_objects,
                               swapped=p.swapped, uninformative=p.uninformative, wrong_attribute=p.wrong_attribute,
                               seed=d.seed), 0
    reader = JsonlPairs if p.source == "jsonl" else ShardPairs
    parts, skipped = [], 0
    for key in ("path", "reference_path", "test_path"):
        where = getattr(p, key)
        if not where:
            raise ValueError(f"pairs.source={p.source} needs --pairs.{key} (pool, clean reference and clean test pairs)")
        if p.source == "shards" and all(is_plain_tar(s) for s in expand_shards(where)):
            # uncompressed shards: images stay in the files and are read when a batch needs them
            pairs, bad = lazy_pairs(where, image_size=p.image_size, skip_bad=d.skip_bad)
            parts.append(pairs)
            skipped += bad
            continue
        r = reader(where, image_size=p.image_size, skip_bad=d.skip_bad)
        parts.append(collect(r))
        skipped += r.skipped
    return PairSplits(pool=parts[0], reference=parts[1], test=parts[2]), skipped
