"""Images read from files on demand, so a pool of any size is never held in memory.

`LazyImages` stands in for the `[N, C, H, W]` float32 image tensor of an `ImageSet`: indexing it
with a `[K]` int64 tensor, a slice or an int reads just those images and returns a float32 tensor
in [-1, 1], exactly as the in-memory source would have. Subsets (`take`) compose row maps and read
nothing. Two stores back it:

- `NpyImages`: a uint8 `.npy` array, each image read with `os.pread` (the page cache holds the
  file, not this process; a memory map would count every touched page in the run's RSS);
- `FileImages`: one PNG/JPEG per image, decoded and resized with Pillow on each read;
- `ArrayImages`: a uint8 array held in memory (a quarter of the float32 tensor's bytes).
"""

from __future__ import annotations

import os
from typing import Protocol, Sequence

import numpy as np
import torch

from learnability.data.columns import Index, Range, compose, lookup, npy_header


class ImageStore(Protocol):
    """Rows of uint8 images `[C, H, W]`, read by row number."""

    shape: tuple[int, int, int]

    def __len__(self) -> int: ...

    def read(self, rows: np.ndarray) -> np.ndarray:
        """uint8 `[len(rows), C, H, W]`."""
        ...


class NpyImages:
    """A uint8 `.npy` file of images `[N, H, W]`, `[N, C, H, W]` or `[N, H, W, C]` (C in 1, 3)."""

    def __init__(self, path: str):
        shape, fortran, dtype, self.offset = npy_header(path, "image", "np.save(path, uint8_array)")
        if dtype != np.uint8 or fortran:
            raise ValueError(f"{path}: images must be a C-order uint8 array (0-255); got {dtype}{' Fortran-order' if fortran else ''}")
        if len(shape) == 3:
            chw, self.channels_last = (1, *shape[1:]), False
        elif len(shape) == 4 and shape[1] in (1, 3):
            chw, self.channels_last = tuple(shape[1:]), False
        elif len(shape) == 4 and shape[3] in (1, 3):
            chw, self.channels_last = (shape[3], shape[1], shape[2]), True
        else:
            raise ValueError(f"{path}: images must be [N, H, W], [N, C, H, W] or [N, H, W, C] with C in (1, 3); got {shape}")
        self.path, self.n, self.shape = path, int(shape[0]), tuple(int(v) for v in chw)
        self.row_bytes = int(np.prod(self.shape))
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def read(self, rows: np.ndarray) -> np.ndarray:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        c, h, w = self.shape
        out = np.empty((len(rows), self.row_bytes), dtype=np.uint8)
        for j, r in enumerate(rows.tolist()):
            if not 0 <= r < self.n:
                raise IndexError(f"image row {r} is out of range for {self.path} ({self.n} images)")
            buf = os.pread(self._fd, self.row_bytes, self.offset + r * self.row_bytes)
            if len(buf) != self.row_bytes:
                raise ValueError(f"{self.path} is truncated: image {r} is cut off; regenerate the file")
            out[j] = np.frombuffer(buf, dtype=np.uint8)
        if self.channels_last:
            return out.reshape(len(rows), h, w, c).transpose(0, 3, 1, 2)
        return out.reshape(len(rows), c, h, w)


class ArrayImages:
    """uint8 images `[N, C, H, W]` (0-255) held in memory: 1 byte a pixel value, not float32's 4."""

    def __init__(self, array: np.ndarray):
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] not in (1, 3):
            raise ValueError(f"ArrayImages needs a uint8 array [N, C, H, W] with C in (1, 3); got {array.dtype} {array.shape}")
        self.array = array
        self.shape = tuple(int(v) for v in array.shape[1:])

    def __len__(self) -> int:
        return len(self.array)

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self.array[rows]


class FileImages:
    """One image file per row (PNG/JPEG), converted to grayscale (1) or RGB (3) and resized to
    `size` x `size` with Pillow's bilinear filter on every read. Paths are kept as one compact
    byte-string array, not a list of Python objects."""

    def __init__(self, paths: Sequence[str], *, size: int, channels: int):
        if channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 (grayscale) or 3 (RGB); got {channels}")
        self.paths = np.array([os.fsencode(p) for p in paths], dtype=np.bytes_)
        self.size, self.channels = size, channels
        self.shape = (channels, size, size)

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, rows: np.ndarray) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        out = np.empty((len(rows), *self.shape), dtype=np.uint8)
        for j, r in enumerate(rows.tolist()):
            path = os.fsdecode(self.paths[r])
            try:
                with Image.open(path) as im:
                    a = np.asarray(im.convert("L" if self.channels == 1 else "RGB")
                                   .resize((self.size, self.size), Image.BILINEAR), dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"cannot read image {path}: {e}; remove or replace it") from e
            out[j] = a[None] if self.channels == 1 else a.transpose(2, 0, 1)
        return out


class LazyImages:
    """`[N, C, H, W]` float32 images in [-1, 1] read from `store` at `rows` (a row map of
    `data.columns`: all rows when None) on each index. Behaves like the image tensor of an
    `ImageSet` for `len`, `.shape`, `.dim()`, indexing and `.to(device)` (batches come back on that
    device)."""

    def __init__(self, store: ImageStore, rows=None, device: torch.device | str = "cpu"):
        self.store = store
        self.rows = Range(0, len(store)) if rows is None else rows
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.store.shape))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def dim(self) -> int:
        return 4

    def take(self, index: Index) -> "LazyImages":
        """The images at positions `index`, still lazy (nothing is read)."""
        return LazyImages(self.store, compose(self.rows, index), self.device)

    def __getitem__(self, index: Index) -> torch.Tensor:
        rows = lookup(self.rows, index)
        single = np.ndim(rows) == 0
        x = torch.from_numpy(np.ascontiguousarray(self.store.read(np.atleast_1d(rows)))).float().div_(127.5).sub_(1.0)
        x = x.to(self.device)
        return x[0] if single else x

    def to(self, device: torch.device | str) -> "LazyImages":
        return LazyImages(self.store, self.rows, device)

    def chunks(self, size: int = 128):
        """The images in order, `[<=size, C, H, W]` at a time (small chunks: a pass over a big pool
        that allocates and frees 4 MB tensors leaves tens of MB of allocator slack behind)."""
        for i in range(0, len(self), size):
            yield self[i:i + size]
