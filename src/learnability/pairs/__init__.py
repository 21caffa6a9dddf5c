"""Image-text pairs for CLIP-style training: built-in compositional Fashion-MNIST pairs with
web-like caption noise, a word-level tokenizer, and readers for a user's JSON-lines or
webdataset-format tar shards."""

from learnability.pairs.captions import (CLASS_NAMES, COLOURS, POSITIONS, SIZES, class_prompts, describe)
from learnability.pairs.noise import UNINFORMATIVE_TEXTS, corrupt_pairs, hard_negatives
from learnability.pairs.pairset import (ATTRIBUTE_FIELDS, CLEAN, DUPLICATE, KIND_NAMES, SWAPPED, UNINFORMATIVE, WRONG_ATTRIBUTE,
                                        PairSet, PairSplits)
from learnability.pairs.readers import JsonlPairs, ShardPairs, collect, decode_image
from learnability.pairs.shards import expand_shards, shard_id, split_shard_id
from learnability.pairs.synthetic import make_pair_splits, render_pairs, synthetic_pairs
from learnability.pairs.tokenizer import WordTokenizer, build_vocab, split_words

__all__ = [
    "ATTRIBUTE_FIELDS", "CLASS_NAMES", "CLEAN", "COLOURS", "DUPLICATE", "JsonlPairs", "KIND_NAMES", "POSITIONS", "PairSet",
    "PairSplits", "SIZES", "SWAPPED", "ShardPairs", "UNINFORMATIVE", "UNINFORMATIVE_TEXTS", "WRONG_ATTRIBUTE",
    "WordTokenizer", "build_vocab", "class_prompts", "collect", "corrupt_pairs", "decode_image", "describe",
    "expand_shards", "hard_negatives", "make_pair_splits", "render_pairs", "shard_id", "split_shard_id",
    "split_words", "synthetic_pairs",
]
