"""Data: sources with stable example ids, splits, web-like corruption, and the index stream."""

from learnability.data.corrupt import CLEAN, DUPLICATE, JUNK, LABEL_NOISE, corrupt
from learnability.data.imageset import ImageSet
from learnability.data.bijection import Bijection, PermutedRange
from learnability.data.columns import LazyColumn, NpyColumn
from learnability.data.lazy import FileImages, LazyImages, NpyImages
from learnability.data.sources import load_source
from learnability.data.splits import Splits, make_splits
from learnability.data.build import build_data
from learnability.data.stream import Coverage, IndexStream

__all__ = [
    "Bijection", "CLEAN", "Coverage", "build_data", "LazyColumn", "NpyColumn", "PermutedRange", "DUPLICATE", "FileImages", "JUNK", "LABEL_NOISE", "ImageSet", "IndexStream", "LazyImages",
    "NpyImages", "Splits",
    "corrupt", "load_source", "make_splits",
]
