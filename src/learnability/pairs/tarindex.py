"""Random access into webdataset tar shards: a member offset index, built once and cached atomically.

`ShardIndex.build(shards)` reads each shard's tar headers once (no image is decoded) and records,
per sample, where its image and caption bytes lie. `ShardImages` is an `ImageStore` over that index:
reading row r `pread`s just that image's bytes and decodes them, so `LazyImages(ShardImages(...))`
is a pool of any size that is never held in memory; `captions(rows)` reads captions the same way.
Ids are those of `ShardPairs` (`shard_index * 2**32 + position`, bad samples counted), and images
are decoded exactly as `ShardPairs` decodes them.

With `index_dir`, each shard's index is saved as `<hash of its path>.npy` plus a `.json` record of
the shard's size and mtime and the index file's sha256, each written atomically (temp file, fsync,
rename; the record last), and reused while the shard is unchanged.

Compressed shards (`.tar.gz`, `.tar.bz2`, `.tar.xz`: told by their magic bytes) cannot be read at
an offset, so each is streamed once, a megabyte at a time, into an uncompressed copy in `index_dir`
(`plain_copy`: atomic, with a record of the source's size and mtime, reused while it is unchanged)
and read from there: the pool is never held in memory, whatever its shards' compression.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import tarfile
from typing import TYPE_CHECKING

import numpy as np

from learnability.io import atomic_save_npy, atomic_write, atomic_write_text, file_sha256
from learnability.pairs.readers import IMAGE_EXTS, TEXT_EXTS, _split_key
from learnability.pairs.shards import expand_shards, shard_id

if TYPE_CHECKING:
    from learnability.pairs.pairset import PairSet

ENTRY = np.dtype([("id", np.int64), ("image_offset", np.int64), ("image_size", np.int64),
                  ("text_offset", np.int64), ("text_size", np.int64)])


def _index_one(path: str, shard_index: int, skip_bad: bool, name: str = "") -> tuple[np.ndarray, int]:
    """The samples of one shard, in order, as `ENTRY` rows (samples lacking an image or a caption
    skipped or raised), and how many samples the shard holds. `name`: the shard as the user gave
    it (when `path` is its decompressed copy), for messages."""
    shown = name or path
    rows: list[tuple[int, int, int, int, int]] = []
    key, group, pos = None, {}, 0

    def flush() -> None:
        images = [e for e in IMAGE_EXTS if e in group]
        texts = [e for e in TEXT_EXTS if e in group]
        if len(images) == 1 and texts and None not in group.values():
            (io_, isz), (to, tsz) = group[images[0]], group[texts[0]]
            rows.append((shard_id(shard_index, pos), io_, isz, to, tsz))
        elif not skip_bad:
            raise ValueError(f"{shown} key {key!r}: needs exactly one image (.png/.jpg) and one .txt, once each; "
                             f"has {', '.join('.' + e for e in group) or 'no files'} (or pass skip_bad=True)")

    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                tar.members = []  # headers are not kept: a shard may hold millions of members
                if not member.isfile():
                    continue
                k, ext = _split_key(member.name)
                if k != key and key is not None:
                    flush()
                    group, pos = {}, pos + 1
                key = k
                group[ext] = None if ext in group else (member.offset_data, member.size)
            if key is not None:
                flush()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{shown}: cannot read the tar headers after key {key!r} ({e}); the shard is truncated "
                         "or not an uncompressed tar file") from e
    size = os.path.getsize(path)
    arr = np.array(rows, dtype=ENTRY)
    if len(arr) and int((arr["image_offset"] + arr["image_size"]).max()) > size:
        raise ValueError(f"{shown}: a member runs past the end of the file; the shard is truncated")
    return arr, pos + 1 if key is not None else 0


def _cached(path: str, shard_index: int, skip_bad: bool, index_dir: str, name: str = "") -> tuple[np.ndarray, int]:
    st = os.stat(path)
    name = hashlib.sha256(f"{os.path.abspath(path)}|{shard_index}|{skip_bad}".encode()).hexdigest()[:24]
    npy, rec = os.path.join(index_dir, name + ".npy"), os.path.join(index_dir, name + ".json")
    want = {"shard": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        with open(rec) as f:
            record = json.load(f)
        if all(record.get(k) == v for k, v in want.items()) and file_sha256(npy) == record.get("sha256"):
            return np.load(npy, allow_pickle=False), int(record["samples"])
    except (OSError, ValueError, KeyError):
        pass  # absent, stale or damaged: rebuilt below
    arr, samples = _index_one(path, shard_index, skip_bad, name)
    atomic_save_npy(npy, arr)
    atomic_write_text(rec, json.dumps({**want, "samples": samples, "sha256": file_sha256(npy)}) + "\n")
    return arr, samples


COMPRESSORS = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))


def plain_copy(path: str, cache_dir: str) -> str:
    """`path` when it is not compressed; else its uncompressed copy in `cache_dir`, streamed once
    (never held in memory), written atomically and reused while `path`'s size and mtime match."""
    with open(path, "rb") as f:
        magic = f.read(6)
    opener = next((o for m, o in COMPRESSORS if magic.startswith(m)), None)
    if opener is None:
        return path
    if not cache_dir:
        raise ValueError(f"{path} is compressed; random access needs an uncompressed copy: give a cache folder "
                         f"(--pairs.shard_cache) or decompress the shards")
    st = os.stat(path)
    name = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:24]
    copy, rec = os.path.join(cache_dir, name + ".tar"), os.path.join(cache_dir, name + ".tar.json")
    want = {"shard": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        with open(rec) as f:
            record = json.load(f)
        if all(record.get(k) == v for k, v in want.items()) and os.path.getsize(copy) == record.get("copy_size"):
            return copy
    except (OSError, ValueError):
        pass  # absent, stale or damaged: decompressed again below

    def stream(out) -> None:
        with opener(path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)

    try:
        atomic_write(copy, stream)
    except (OSError, EOFError, lzma.LZMAError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: cannot decompress the shard ({e}); it is truncated or damaged") from e
    atomic_write_text(rec, json.dumps({**want, "copy_size": os.path.getsize(copy)}) + "\n")
    return copy


def lazy_pairs(pattern: str | list[str], *, image_size: int = 40, skip_bad: bool = False,
               index_dir: str = "") -> tuple["PairSet", int]:
    """The pairs of webdataset shards as a `PairSet` whose images stay in the shards
    (`LazyImages`); captions are read (they are tokenised up front). Every sample's caption and
    image header are checked now, as `ShardPairs` would check them, so a bad sample fails here (or,
    with `skip_bad`, is dropped and counted) rather than mid-run. Returns the set and the count of
    skipped samples. Ids are `ShardPairs`' ids."""
    from PIL import Image, UnidentifiedImageError

    from learnability.data.lazy import LazyImages
    from learnability.pairs.pairset import PairSet

    store = ShardImages(pattern, image_size=image_size, skip_bad=skip_bad, index_dir=index_dir)
    keep, captions, skipped = [], [], store.missing
    for r in range(len(store)):
        try:
            caption = store.captions(np.array([r]))[0]
            if not caption:
                raise ValueError(f"{store.where(r)}: the caption is empty; give every image some text or pass skip_bad=True")
            data, where = store._bytes(r, "image")
            try:
                Image.open(io.BytesIO(data)).close()
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"{where}: cannot decode the image ({e}); replace it or pass skip_bad=True") from e
        except ValueError:
            if not skip_bad:
                raise
            skipped += 1
            continue
        keep.append(r)
        captions.append(caption)
    if not keep:
        raise ValueError(f"no valid pairs read from {pattern} ({skipped} bad ones skipped)")
    rows = np.array(keep, dtype=np.int64)
    import torch

    return PairSet(LazyImages(store, rows), captions, torch.from_numpy(store.ids[rows].copy())), skipped


class ShardImages:
    """An `ImageStore` of the samples of webdataset shards (`pattern` as for `ShardPairs`), images
    RGB resized to `image_size`; rows in shard order. `ids` `[N]` int64 are `ShardPairs`' ids."""

    def __init__(self, pattern: str | list[str], *, image_size: int = 40, skip_bad: bool = False, index_dir: str = ""):
        items = [pattern] if isinstance(pattern, str) else list(pattern)
        self.names = [s for item in items for s in expand_shards(item)]  # as given, for messages
        if not self.names:
            raise ValueError("no shards given; pass a path, a pattern like 'shards/{000..009}.tar' or a list")
        self.shards = [plain_copy(s, index_dir) for s in self.names]  # what is read: compressed ones decompressed
        parts = [(_cached(p, i, skip_bad, index_dir, n) if index_dir else _index_one(p, i, skip_bad, n))
                 for i, (p, n) in enumerate(zip(self.shards, self.names))]
        self.entries = np.concatenate([a for a, _ in parts]) if parts else np.empty(0, ENTRY)
        self.missing = sum(groups - len(a) for a, groups in parts)  # samples lacking an image or a caption
        self.size, self.shape = image_size, (3, image_size, image_size)
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def ids(self) -> np.ndarray:
        return self.entries["id"]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fds": {}}

    def where(self, row: int) -> str:
        i = int(self.entries[row]["id"])
        return f"{self.names[i >> 32]} sample {i & 0xFFFFFFFF}"

    def _bytes(self, row: int, field: str) -> tuple[bytes, str]:
        e = self.entries[row]
        s = int(e["id"]) >> 32
        if s not in self._fds:
            self._fds[s] = os.open(self.shards[s], os.O_RDONLY)
        n = int(e[f"{field}_size"])
        data = os.pread(self._fds[s], n, int(e[f"{field}_offset"]))
        where = self.where(row)
        if len(data) != n:
            raise ValueError(f"{where}: the shard is shorter than its index says; delete the index and re-read")
        return data, where

    def read(self, rows: np.ndarray) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        out = np.empty((len(rows), *self.shape), dtype=np.uint8)
        for j, r in enumerate(rows.tolist()):
            data, where = self._bytes(r, "image")
            try:
                with Image.open(io.BytesIO(data)) as im:
                    a = np.asarray(im.convert("RGB").resize((self.size, self.size), Image.BILINEAR), dtype=np.uint8)
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
                raise ValueError(f"{where}: cannot decode the image ({e}); replace it") from e
            out[j] = a.transpose(2, 0, 1)
        return out

    def captions(self, rows: np.ndarray) -> list[str]:
        """The captions of `rows`, stripped, read from the shards."""
        out = []
        for r in np.atleast_1d(rows).tolist():
            data, where = self._bytes(r, "text")
            try:
                out.append(data.decode("utf-8").strip())
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: the caption is not UTF-8 text ({e})") from None
        return out
