"""A user's own image-text pairs: a JSON-lines file, or webdataset-format tar shards read as a stream.

Both readers are iterables of `(id, image, caption)`: id an int (stable, see each reader), image a
`[3, S, S]` float32 tensor in [-1, 1] (RGB, resized to `image_size` with Pillow), caption a str.
Bad input raises a ValueError naming the file and line or key; with `skip_bad=True` the bad row is
skipped instead and counted: `reader.skipped` (total of the last pass) and `reader.problems` (the
first `MAX_PROBLEMS` messages) are there for metrics. `collect(reader)` gathers a `PairSet`.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import torch

from learnability.pairs.pairset import PairSet
from learnability.pairs.shards import expand_shards, shard_id

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
TEXT_EXTS = ("txt",)
MAX_PROBLEMS = 20
Pair = tuple[int, torch.Tensor, str]


def decode_image(data: bytes | str, size: int, where: str) -> torch.Tensor:
    """Decode PNG/JPEG/... bytes (or a file path) to `[3, size, size]` float32 in [-1, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            a = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{where}: cannot decode the image ({e}); replace it or pass skip_bad=True") from e
    return torch.from_numpy(a.transpose(2, 0, 1).copy()).float().div_(127.5).sub_(1.0)


def _caption(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{where}: the caption must be a string; got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{where}: the caption is empty; give every image some text or pass skip_bad=True")
    return text.strip()


class _Reader:
    """Shared skip-or-raise bookkeeping."""

    def __init__(self, image_size: int, skip_bad: bool):
        if image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels; got {image_size}")
        self.image_size, self.skip_bad = image_size, skip_bad
        self.skipped, self.problems = 0, []

    def _bad(self, e: ValueError) -> None:
        if not self.skip_bad:
            raise e
        self.skipped += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(str(e))


class JsonlPairs(_Reader):
    """Pairs from a JSON-lines file of `{"image": path, "text": caption}` rows; relative image
    paths are resolved against the file's folder. The id of a row is its 0-based line index in the
    file (blank lines count and are ignored), so ids stay put when bad rows are skipped."""

    def __init__(self, path: str, *, image_size: int = 40, skip_bad: bool = False):
        super().__init__(image_size, skip_bad)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pairs file {path!r} does not exist; give a JSON-lines file of "
                                    '{"image": "path.png", "text": "a caption"} rows')
        self.path, self.root = path, os.path.dirname(os.path.abspath(path))

    def __iter__(self) -> Iterator[Pair]:
        self.skipped, self.problems = 0, []
        with open(self.path, "rb") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    yield self._row(i, line)
                except ValueError as e:
                    self._bad(e)

    def _row(self, i: int, raw: bytes) -> Pair:
        where = f"{self.path} line {i + 1}"
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{where}: not UTF-8 text ({e}); save the file as UTF-8") from None
        except json.JSONDecodeError as e:
            raise ValueError(f'{where}: invalid JSON ({e.msg}); each line must be like {{"image": "a.png", "text": "a caption"}}') from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object with keys 'image' and 'text'; got {type(row).__name__}")
        missing = [k for k in ("image", "text") if k not in row]
        if missing:
            raise ValueError(f"{where}: missing key {missing[0]!r} (found: {', '.join(map(repr, row)) or 'none'})")
        if not isinstance(row["image"], str) or not row["image"]:
            raise ValueError(f"{where}: 'image' must be a non-empty path string; got {row['image']!r}")
        caption = _caption(row["text"], where)
        image = os.path.join(self.root, row["image"])
        if not os.path.isfile(image):
            raise ValueError(f"{where}: image {image} does not exist; fix the path (relative paths start at the file's folder)")
        return i, decode_image(image, self.image_size, f"{where} image {image}"), caption


def _split_key(name: str) -> tuple[str, str]:
    """webdataset's convention: the key is the path up to the first dot of the file name."""
    folder, base = os.path.split(name)
    stem, dot, ext = base.partition(".")
    return os.path.join(folder, stem), ext.lower() if dot else ""


class ShardPairs(_Reader):
    """Pairs from webdataset-format tar shards (KEY.png or KEY.jpg with KEY.txt; other members,
    e.g. KEY.json, are ignored), read with `tarfile` in streaming mode: one sample in memory at a
    time, shards in the order given. `shards`: a pattern ("shards/{000..009}.tar", globs), a list
    of paths or patterns, or open binary streams. The id of a sample is
    `shard_index * 2**32 + position`, shard_index its shard's place in the expanded list and
    position the sample's place within the shard (bad samples count), as int64. A shard cut off
    inside a member raises (or counts as one bad row); one cut exactly inside a tar header ends
    early without an error, as `tarfile` cannot tell it from the end of the archive."""

    def __init__(self, shards: str | list[str | BinaryIO], *, image_size: int = 40, skip_bad: bool = False):
        super().__init__(image_size, skip_bad)
        items = [shards] if isinstance(shards, str) else list(shards)
        self.shards = [s for item in items for s in (expand_shards(item) if isinstance(item, str) else [item])]
        if not self.shards:
            raise ValueError("no shards given; pass a path, a pattern like 'shards/{000..009}.tar' or a list")

    def __iter__(self) -> Iterator[Pair]:
        self.skipped, self.problems = 0, []
        for s, shard in enumerate(self.shards):
            name = shard if isinstance(shard, str) else getattr(shard, "name", f"<stream {s}>")
            pos, last = 0, "(start)"
            try:
                with tarfile.open(shard if isinstance(shard, str) else None, mode="r|*",
                                  fileobj=None if isinstance(shard, str) else shard) as tar:
                    for key, group in _groups(tar):
                        example_id = shard_id(s, pos)
                        try:
                            yield example_id, *self._sample(group, f"{name} key {key!r}")
                        except ValueError as e:
                            self._bad(e)
                        pos, last = pos + 1, key
            except (tarfile.TarError, EOFError, OSError) as e:
                self._bad(ValueError(f"{name}: cannot read the tar stream after key {last!r} ({e}); "
                                     "the shard is truncated or not a tar file"))

    def _sample(self, group: dict[str, bytes | None], where: str) -> tuple[torch.Tensor, str]:
        images = [e for e in IMAGE_EXTS if e in group]
        texts = [e for e in TEXT_EXTS if e in group]
        if any(v is None for v in group.values()):
            raise ValueError(f"{where}: the key appears twice with the same extension; keep one file per extension")
        if not images or not texts:
            lacks = "image (.png/.jpg)" if not images else "text (.txt)"
            raise ValueError(f"{where}: has {', '.join('.' + e for e in group) or 'no files'} but no {lacks}; "
                             "each sample needs KEY.png or KEY.jpg and KEY.txt")
        if len(images) > 1:
            raise ValueError(f"{where}: has more than one image ({', '.join(images)}); keep one per key")
        try:
            text = group[texts[0]].decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{where}: the caption is not UTF-8 text ({e})") from None
        return decode_image(group[images[0]], self.image_size, where), _caption(text, where)


def _groups(tar: tarfile.TarFile) -> Iterator[tuple[str, dict[str, bytes | None]]]:
    """Consecutive members sharing a key, as {extension: bytes}; None marks a repeated extension."""
    key, group = None, {}
    for member in tar:
        if not member.isfile():
            continue
        k, ext = _split_key(member.name)
        if k != key and key is not None:
            yield key, group
            group = {}
        key = k
        data = tar.extractfile(member).read()
        group[ext] = None if ext in group else data
    if key is not None:
        yield key, group


def collect(reader: JsonlPairs | ShardPairs, limit: int = 0) -> PairSet:
    """Read `reader` (the first `limit` pairs, 0 for all) into a `PairSet` (no labels)."""
    ids, images, captions = [], [], []
    for i, image, caption in reader:
        ids.append(i), images.append(image), captions.append(caption)
        if limit and len(ids) >= limit:
            break
    if not ids:
        raise ValueError(f"no valid pairs read ({reader.skipped} bad ones skipped: {reader.problems[:3]})")
    return PairSet(torch.stack(images), captions, torch.tensor(ids, dtype=torch.int64))
