"""Data sources: each returns a training set and a clean test set of `ImageSet`s with stable ids.

- `fashion_mnist`: the idx `.gz` files of Debian's `dataset-fashion-mnist` package.
- `digits`: scikit-learn's bundled 8x8 digits.
- `npz`: a user's `.npz` with arrays `x` (`[N, H, W]`, `[N, H, W, C]` or `[N, C, H, W]`, uint8 0-255
  or float 0-1) and `y` (integer labels); optional `x_test`, `y_test`.
- `folder`: a user's folder with one subfolder per class of PNG/JPEG images, read with Pillow when
  a batch needs them (`LazyImages`: the pool is never held in memory).
- `npy`: a folder holding `x.npy` (uint8 images `[N, H, W]`, `[N, C, H, W]` or `[N, H, W, C]`) and
  `y.npy` (integer labels), optionally `x_test.npy` and `y_test.npy`; images are read from the file
  when a batch needs them, for pools larger than memory.
Sources without a test split hold out `test_fraction` of their examples (seeded). With
`order="bijection"` that hold-out is a range of a seeded bijection (`data.bijection`: O(1) memory)
instead of a permutation array, and the `npy` source's labels and ids stay on disk (`LazyColumn`).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from learnability.data.bijection import Bijection, PermutedRange, keyed
from learnability.data.columns import LazyColumn, NpyColumn, RowNumbers
from learnability.data.imageset import ImageSet
from learnability.data.lazy import FileImages, LazyImages, NpyImages

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_EXTS = {".png", ".jpg", ".jpeg"}
SOURCES = ("fashion_mnist", "digits", "npz", "folder", "npy")
LAZY_SOURCES = ("folder", "npy")  # images read per batch (unless data.in_memory)
ORDERS = ("permutation", "bijection")


def resolve_order(order: str, source: str) -> str:
    """The shuffle of a source's data: `order`, with auto = bijection for the file-backed sources
    (folder, npy: nothing per example held, so the pool can outgrow memory), permutation otherwise
    (the torch.randperm order of earlier versions, so their results are unchanged)."""
    if order != "auto":
        return order
    return "bijection" if source in LAZY_SOURCES else "permutation"


def load_source(source: str, *, path: str = "", image_size: int = 0, channels: int = 0,
                test_fraction: float = 0.2, num_classes: int = 0, seed: int = 0,
                order: str = "permutation") -> tuple[ImageSet, ImageSet]:
    """Load `source` and return `(train, test)`. See the module docstring for the sources."""
    if order not in ORDERS:
        raise ValueError(f"unknown data.order {order!r}; choose one of {', '.join(ORDERS)}")
    if source == "fashion_mnist":
        return _fashion_mnist(path or FASHION_MNIST_DIR)
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images * (255.0 / 16.0)).round().astype(np.uint8)[:, None]
        return _split_off_test(x, d.target.astype(np.int64), 10, test_fraction, seed, order)
    if source == "npz":
        return _npz(path, num_classes, test_fraction, seed, order)
    if source == "folder":
        return _folder(path, image_size or 32, channels or 1, test_fraction, seed, order)
    if source == "npy":
        return _npy(path, num_classes, test_fraction, seed, order)
    raise ValueError(f"unknown data.source {source!r}; choose one of {', '.join(SOURCES)}")


def _to_imageset(x_uint8: np.ndarray | LazyImages, y: np.ndarray | LazyColumn, num_classes: int,
                 ids: np.ndarray | LazyColumn) -> ImageSet:
    x = x_uint8 if isinstance(x_uint8, LazyImages) else torch.tensor(x_uint8, dtype=torch.float32).div_(127.5).sub_(1.0)
    y, ids = (c if isinstance(c, LazyColumn) else torch.from_numpy(c.astype(np.int64, copy=False)) for c in (y, ids))
    return ImageSet(x, y, ids, num_classes)


def _split_off_test(x: np.ndarray | LazyImages, y: np.ndarray | LazyColumn, k: int, test_fraction: float, seed: int,
                    order: str = "permutation") -> tuple[ImageSet, ImageSet]:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"data.test_fraction must be in (0, 1); got {test_fraction}")
    n = len(y)
    n_test = max(1, round(test_fraction * n))
    if order == "bijection":  # two ranges of one seeded bijection: nothing per example is held
        ids = LazyColumn(RowNumbers(n)) if isinstance(y, LazyColumn) else np.arange(n)
        full = _to_imageset(x, y, k, ids)
        shuffled = PermutedRange(Bijection(n, keyed(seed, "test split")))
        return full.subset(shuffled[n_test:]), full.subset(shuffled[:n_test])
    perm = np.random.default_rng(seed).permutation(n)
    te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    pick = x.take if isinstance(x, LazyImages) else x.__getitem__
    cols = y.take if isinstance(y, LazyColumn) else y.__getitem__
    return _to_imageset(pick(tr), cols(tr), k, tr), _to_imageset(pick(te), cols(te), k, te)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_mnist(root: str) -> tuple[ImageSet, ImageSet]:
    out = []
    for split, (img, lab) in FASHION_MNIST_FILES.items():
        paths = [Path(root) / img, Path(root) / lab]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"Fashion-MNIST file(s) not found: {', '.join(missing)}. Install Debian's package "
                f"'dataset-fashion-mnist' (sudo apt-get install dataset-fashion-mnist; `make demo` does it), "
                f"or point --data.path at a folder holding the idx .gz files.")
        x, y = _read_idx(paths[0]), _read_idx(paths[1])
        out.append(_to_imageset(x[:, None], y, 10, np.arange(len(y))))
    return out[0], out[1]


def _check_labels(y: np.ndarray, num_classes: int, where: str) -> int:
    if y.ndim != 1:
        raise ValueError(f"{where}: labels must be a 1-D array; got shape {y.shape}")
    if not len(y):
        raise ValueError(f"{where}: the labels array is empty; the file holds no examples")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{where}: labels must be integers; got dtype {y.dtype} with non-integer values")
    if len(y) and y.min() < 0:
        raise ValueError(f"{where}: labels must be >= 0; found {int(y.min())}")
    if num_classes and len(y) and y.max() >= num_classes:
        raise ValueError(f"{where}: label {int(y.max())} is out of range for data.num_classes={num_classes}")
    return num_classes or int(y.max()) + 1


def _check_classes(labels: np.ndarray, where: str) -> None:
    """At least two distinct training labels: with one, any model reaches loss 0 and accuracy 1.0
    (and an inferred class count of max label + 1 would name classes that never occur)."""
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError(f"{where}: every label is {int(present[0])}; classification needs examples of at least "
                         f"2 classes")


def _images_nchw(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim and not len(x):
        raise ValueError(f"{where}: the images array is empty; the file holds no examples")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise ValueError(f"{where}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W] with C in (1, 3); got {x.shape}")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ValueError(f"{where}: images must be uint8 (0-255) or finite floats in [0, 1]")
    return (x * 255).round().astype(np.uint8)


def _npz(path: str, num_classes: int, test_fraction: float, seed: int, order: str) -> tuple[ImageSet, ImageSet]:
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"data.source=npz needs --data.path pointing at an .npz file; {path!r} does not exist")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for key in ("x", "y"):
        if key not in arrays:
            raise ValueError(f"{path}: missing array {key!r} (found: {', '.join(arrays) or 'none'}); save with np.savez(path, x=images, y=labels)")
    x, y = _images_nchw(arrays["x"], f"{path} x"), arrays["y"]
    if len(x) != len(y):
        raise ValueError(f"{path}: x has {len(x)} images but y has {len(y)} labels")
    k = _check_labels(y, num_classes, f"{path} y")
    _check_classes(y, f"{path} y")
    if "x_test" in arrays or "y_test" in arrays:
        missing = [key for key in ("x_test", "y_test") if key not in arrays]
        if missing:
            raise ValueError(f"{path}: missing array {missing[0]!r}; a test split needs both x_test and y_test")
        xt, yt = _images_nchw(arrays["x_test"], f"{path} x_test"), arrays["y_test"]
        if len(xt) != len(yt):
            raise ValueError(f"{path}: x_test has {len(xt)} images but y_test has {len(yt)} labels")
        k = max(k, _check_labels(yt, num_classes, f"{path} y_test"))
        if xt.shape[1:] != x.shape[1:]:
            raise ValueError(f"{path}: x_test images are {xt.shape[1:]} but x images are {x.shape[1:]}")
        return (_to_imageset(x, y.astype(np.int64), k, np.arange(len(y))),
                _to_imageset(xt, yt.astype(np.int64), k, np.arange(len(yt))))
    return _split_off_test(x, y.astype(np.int64), k, test_fraction, seed, order)


def _folder(path: str, size: int, channels: int, test_fraction: float, seed: int, order: str) -> tuple[ImageSet, ImageSet]:
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not path or not root.is_dir():
        raise FileNotFoundError(f"data.source=folder needs --data.path pointing at a folder; {path!r} is not one")
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 (grayscale) or 3 (RGB); got {channels}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir()) if f.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise ValueError(f"{root}: no PNG/JPEG images found; expected one subfolder per class holding images")
    used = sorted({i for _, i in files})
    if len(used) < 2:
        raise ValueError(f"{root}: found images of only one class ({classes[used[0]]!r}); classification needs at least 2 class subfolders")
    for f, _ in files:  # headers only (cheap): a file that is not an image fails now, not mid-run
        try:
            Image.open(f).close()
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {f}: {e}; remove or replace it") from e
    xs = LazyImages(FileImages([str(f) for f, _ in files], size=size, channels=channels))
    y = np.array([i for _, i in files], dtype=np.int64)
    return _split_off_test(xs, y, len(classes), test_fraction, seed, order)


def _label_column(path: Path, num_classes: int, train: bool = False) -> tuple[LazyColumn, int]:
    """The labels in `path` as a column read from the file, checked a chunk at a time (the same
    rules as in-memory labels: 1-D, not empty, integers or integral floats, >= 0, < num_classes;
    training labels also of at least 2 classes)."""
    store = NpyColumn(str(path))
    if store.ndim != 1:
        raise ValueError(f"{path}: labels must be a 1-D array")
    if not len(store):
        raise ValueError(f"{path}: the labels array is empty; the file holds no examples")
    k, present = 0, np.empty(0, dtype=np.int64)
    for part in store.scan():
        k = max(k, _check_labels(part, num_classes, str(path)))
        if len(present) < 2:  # a few distinct labels suffice; nothing per example is kept
            present = np.union1d(present, np.unique(part)[:2].astype(np.int64))
    if train:
        _check_classes(present, str(path))
    return LazyColumn(store), num_classes or k


def _npy(path: str, num_classes: int, test_fraction: float, seed: int, order: str) -> tuple[ImageSet, ImageSet]:
    root = Path(path)
    if not path or not (root / "x.npy").is_file() or not (root / "y.npy").is_file():
        raise FileNotFoundError(f"data.source=npy needs --data.path pointing at a folder holding x.npy (uint8 images) "
                                f"and y.npy (labels); {path!r} does not have both")
    x, (y, k) = LazyImages(NpyImages(str(root / "x.npy"))), _label_column(root / "y.npy", num_classes, train=True)
    if len(x) != len(y):
        raise ValueError(f"{root}: x.npy has {len(x)} images but y.npy has {len(y)} labels")
    if (root / "x_test.npy").is_file() or (root / "y_test.npy").is_file():
        if not (root / "y_test.npy").is_file():
            raise FileNotFoundError(f"{root}: x_test.npy has no y_test.npy beside it; a test split needs both")
        xt, (yt, kt) = LazyImages(NpyImages(str(root / "x_test.npy"))), _label_column(root / "y_test.npy", num_classes)
        if len(xt) != len(yt):
            raise ValueError(f"{root}: x_test.npy has {len(xt)} images but y_test.npy has {len(yt)} labels")
        if xt.shape[1:] != x.shape[1:]:
            raise ValueError(f"{root}: x_test.npy images are {tuple(xt.shape[1:])} but x.npy images are {tuple(x.shape[1:])}")
        k = max(k, kt)
        return (_to_imageset(x, y, k, LazyColumn(RowNumbers(len(y)))),
                _to_imageset(xt, yt, k, LazyColumn(RowNumbers(len(yt)))))
    return _split_off_test(x, y, k, test_fraction, seed, order)
