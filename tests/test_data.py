"""Data sources, splits, corruption and the index stream, on tiny data made in tmp_path."""

from __future__ import annotations

import copy
import gzip
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learnability.config import DataConfig
from learnability.data import (CLEAN, DUPLICATE, JUNK, LABEL_NOISE, Coverage, ImageSet, IndexStream, build_data, corrupt,
                               load_source, make_splits)
from learnability.data.sources import FASHION_MNIST_DIR, FASHION_MNIST_FILES


def _imageset(n: int, k: int = 5, shape: tuple[int, int, int] = (1, 4, 4), seed: int = 0, id_offset: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g) * 2 - 1
    y = torch.arange(n) % k
    return ImageSet(x, y, torch.arange(n) + id_offset, k)


# --- ImageSet -------------------------------------------------------------------------------


def test_imageset_checks_and_fingerprint() -> None:
    s = _imageset(6, k=3)
    assert len(s) == 6 and s.shape == (1, 4, 4)
    assert s.corruption.tolist() == [0] * 6 and torch.equal(s.true_y, s.y)
    fp = s.fingerprint()
    assert fp == _imageset(6, k=3).fingerprint()
    flipped = copy.deepcopy(s)
    flipped.y[0] = 1
    assert flipped.fingerprint() != fp
    moved = copy.deepcopy(s)
    moved.ids[0] = 100
    assert moved.fingerprint() != fp
    with pytest.raises(ValueError, match="labels"):
        ImageSet(s.x, torch.tensor([0, 1, 2, 3, 0, 1]), s.ids, 3)
    with pytest.raises(ValueError, match="int64"):
        ImageSet(s.x, s.y.int(), s.ids, 3)
    with pytest.raises(ValueError, match="ids"):
        ImageSet(s.x, s.y, s.ids[:5], 3)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        ImageSet(s.x[:, 0], s.y, s.ids, 3)


# --- fashion_mnist (idx .gz) ----------------------------------------------------------------


def _write_idx(path: Path, a: np.ndarray, dtype_code: int = 0x08) -> None:
    header = struct.pack(">HBB", 0, dtype_code, a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + a.astype(np.uint8).tobytes())


def _write_fashion(root: Path, n_train: int = 6, n_test: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    xs = {}
    for split, n in (("train", n_train), ("test", n_test)):
        img, lab = FASHION_MNIST_FILES[split]
        x = rng.integers(0, 256, size=(n, 5, 4), dtype=np.uint8)
        x[0, 0, 0], x[0, 0, 1] = 0, 255
        _write_idx(root / img, x)
        _write_idx(root / lab, np.arange(n) % 10)
        xs[split] = x
    return xs["train"], xs["test"]


def test_idx_reader_on_tiny_files(tmp_path: Path) -> None:
    x_train, x_test = _write_fashion(tmp_path)
    train, test = load_source("fashion_mnist", path=str(tmp_path))
    assert train.x.shape == (6, 1, 5, 4) and test.x.shape == (3, 1, 5, 4)
    assert train.x.dtype == torch.float32
    assert train.x[0, 0, 0, 0] == -1.0 and train.x[0, 0, 0, 1] == 1.0
    torch.testing.assert_close(train.x[:, 0], torch.tensor(x_train, dtype=torch.float32) / 127.5 - 1)
    torch.testing.assert_close(test.x[:, 0], torch.tensor(x_test, dtype=torch.float32) / 127.5 - 1)
    assert train.y.tolist() == [0, 1, 2, 3, 4, 5] and test.y.tolist() == [0, 1, 2]
    assert train.ids.tolist() == list(range(6)) and train.ids.dtype == torch.int64
    assert train.num_classes == test.num_classes == 10


def test_idx_reader_rejects_a_non_idx_file(tmp_path: Path) -> None:
    _write_fashion(tmp_path)
    _write_idx(tmp_path / FASHION_MNIST_FILES["train"][0], np.zeros((6, 5, 4)), dtype_code=0x0D)
    with pytest.raises(ValueError, match="not an idx file"):
        load_source("fashion_mnist", path=str(tmp_path))


def test_missing_fashion_mnist_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_source("fashion_mnist", path=str(tmp_path))
    _write_fashion(tmp_path)
    os.remove(tmp_path / FASHION_MNIST_FILES["test"][1])
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz") as e:
        load_source("fashion_mnist", path=str(tmp_path))
    assert "dataset-fashion-mnist" in str(e.value)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="Debian's dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist_test_split_reads(tmp_path: Path) -> None:
    # Only the 10k test files, linked as both splits, to keep this fast.
    for split in ("train", "test"):
        for name, real in zip(FASHION_MNIST_FILES[split], FASHION_MNIST_FILES["test"]):
            os.symlink(os.path.join(FASHION_MNIST_DIR, real), tmp_path / name)
    train, test = load_source("fashion_mnist", path=str(tmp_path))
    assert train.x.shape == (10000, 1, 28, 28)
    assert sorted(set(test.y.tolist())) == list(range(10))
    assert float(train.x.min()) == -1.0 and float(train.x.max()) == 1.0


# --- digits ---------------------------------------------------------------------------------


def test_digits_source_shapes_and_ids() -> None:
    train, test = load_source("digits", test_fraction=0.2, seed=0)
    assert train.shape == test.shape == (1, 8, 8)
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    ids = torch.cat([train.ids, test.ids])
    assert sorted(ids.tolist()) == list(range(1797))
    assert train.num_classes == 10 and set(train.y.tolist()) == set(range(10))
    assert float(train.x.min()) >= -1.0 and float(train.x.max()) <= 1.0
    again, _ = load_source("digits", test_fraction=0.2, seed=0)
    assert torch.equal(again.ids, train.ids)
    other, _ = load_source("digits", test_fraction=0.2, seed=1)
    assert not torch.equal(other.ids, train.ids)
    with pytest.raises(ValueError, match="test_fraction"):
        load_source("digits", test_fraction=1.0)


def test_unknown_source() -> None:
    with pytest.raises(ValueError, match="digits"):
        load_source("imagenet")


# --- npz ------------------------------------------------------------------------------------


def _npz(tmp_path: Path, **arrays: np.ndarray) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def _labels(n: int, k: int = 3) -> np.ndarray:
    return np.arange(n) % k


@pytest.mark.parametrize("layout, shape", [("NHW", (10, 6, 5)), ("NHWC1", (10, 6, 5, 1)), ("NHWC3", (10, 6, 5, 3)),
                                           ("NCHW1", (10, 1, 6, 5)), ("NCHW3", (10, 3, 6, 5))])
def test_npz_layouts(tmp_path: Path, layout: str, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    train, test = load_source("npz", path=_npz(tmp_path, x=x, y=_labels(10)), test_fraction=0.3, seed=0)
    c = 3 if layout.endswith("3") else 1
    assert train.shape == (c, 6, 5)
    assert len(train) == 7 and len(test) == 3
    assert sorted(torch.cat([train.ids, test.ids]).tolist()) == list(range(10))
    nchw = x.reshape(10, 1, 6, 5) if layout == "NHW" else (x.transpose(0, 3, 1, 2) if layout.startswith("NHWC") else x)
    i = int(train.ids[0])
    torch.testing.assert_close(train.x[0], torch.tensor(nchw[i], dtype=torch.float32) / 127.5 - 1)
    assert int(train.y[0]) == i % 3


def test_npz_float_images(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 10 * 4 * 4).reshape(10, 4, 4).astype(np.float32)
    x[0, 0, 0], x[0, 0, 1] = 0.0, 1.0
    xt = np.full((2, 4, 4), 0.5, dtype=np.float64)
    train, test = load_source("npz", path=_npz(tmp_path, x=x, y=_labels(10), x_test=xt, y_test=np.array([0, 2])))
    assert len(train) == 10 and len(test) == 2  # the given test split is used as is
    assert train.x[0, 0, 0, 0] == -1.0 and train.x[0, 0, 0, 1] == 1.0
    torch.testing.assert_close(train.x[:, 0], torch.tensor(np.round(x * 255) / 127.5 - 1, dtype=torch.float32))
    assert test.y.tolist() == [0, 2] and test.ids.tolist() == [0, 1]
    with pytest.raises(ValueError, match="uint8"):
        load_source("npz", path=_npz(tmp_path, x=x * 255, y=_labels(10)))


def test_npz_integral_float_labels_are_accepted(tmp_path: Path) -> None:
    x = np.zeros((6, 4, 4), dtype=np.uint8)
    train, test = load_source("npz", path=_npz(tmp_path, x=x, y=np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])))
    assert train.y.dtype == torch.int64 and train.num_classes == 3


def test_npz_num_classes(tmp_path: Path) -> None:
    x = np.zeros((6, 4, 4), dtype=np.uint8)
    path = _npz(tmp_path, x=x, y=_labels(6, 2))
    assert load_source("npz", path=path)[0].num_classes == 2  # inferred: max label + 1
    assert load_source("npz", path=path, num_classes=5)[0].num_classes == 5


@pytest.mark.parametrize("arrays, match", [
    ({"y": np.array([0.0, 0.5, 1.0, 1.0, 0.0, 1.0])}, "integers"),
    ({"y": np.array([0, 1, -1, 1, 0, 1])}, ">= 0"),
    ({"y": np.array([0, 1, 2, 1, 0, 1])}, "out of range"),  # num_classes=2 below
    ({"y": np.array([0, 1, 0, 1, 0])}, "5 labels"),
    ({"y": np.array([[0], [1], [0], [1], [0], [1]])}, "1-D"),
    ({}, "missing array 'y'"),
    ({"x": np.zeros((6, 2, 4, 4)), "y": _labels(6, 2)}, "C in"),
    ({"x": np.zeros((6, 4, 4), dtype=np.int32), "y": _labels(6, 2)}, "uint8"),
    ({"x": np.full((6, 4, 4), np.nan), "y": _labels(6, 2)}, "finite"),
    ({"y": _labels(6, 2), "x_test": np.zeros((2, 4, 5), dtype=np.uint8), "y_test": np.array([0, 1])}, "x_test"),
    ({"y": _labels(6, 2), "x_test": np.zeros((2, 4, 4), dtype=np.uint8), "y_test": np.array([0, 1, 1])}, "y_test"),
    ({"y": _labels(6, 2), "x_test": np.zeros((2, 4, 4), dtype=np.uint8), "y_test": np.array([0, 7])}, "y_test"),
    ({"y": _labels(6, 2), "y_test": np.array([0, 1])}, "x_test"),
    ({"y": _labels(6, 2), "x_test": np.zeros((2, 4, 4), dtype=np.uint8)}, "y_test"),
])
def test_npz_errors(tmp_path: Path, arrays: dict, match: str) -> None:
    full = {"x": np.zeros((6, 4, 4), dtype=np.uint8), **arrays}
    with pytest.raises(ValueError, match=match):
        load_source("npz", path=_npz(tmp_path, **full), num_classes=2)


@pytest.mark.parametrize("y, words", [(np.full(6, 3), "every label is 3"), (np.zeros(6, dtype=np.int64), "every label is 0")])
def test_npz_with_one_class_is_refused_naming_the_file(tmp_path: Path, y: np.ndarray, words: str) -> None:
    # labels 3 only would infer 4 classes; class 0 only would train to loss 0 and accuracy 1.0
    path = _npz(tmp_path, x=np.zeros((6, 4, 4), dtype=np.uint8), y=y)
    with pytest.raises(ValueError, match=f"{re.escape(path)} y: {words}.*at least 2 classes"):
        load_source("npz", path=path)
    with pytest.raises(ValueError, match="at least 2 classes"):
        load_source("npz", path=path, num_classes=5)
    # a test split of one class is fine (a small held-out set may be)
    xt = np.zeros((2, 4, 4), dtype=np.uint8)
    ok = _npz(tmp_path, x=np.zeros((6, 4, 4), dtype=np.uint8), y=_labels(6, 2), x_test=xt, y_test=np.array([1, 1]))
    assert load_source("npz", path=ok)[1].y.tolist() == [1, 1]


@pytest.mark.parametrize("arrays", [
    {"x": np.zeros((0, 4, 4), dtype=np.uint8), "y": np.zeros(0, dtype=np.int64)},
    {"x": np.zeros((0, 4, 4), dtype=np.float32), "y": np.zeros(0, dtype=np.int64)},
    {"x": np.zeros((6, 4, 4), dtype=np.uint8), "y": _labels(6, 2), "x_test": np.zeros((0, 4, 4), dtype=np.uint8),
     "y_test": np.zeros(0, dtype=np.int64)},
])
def test_empty_npz_arrays_name_the_file(tmp_path: Path, arrays: dict) -> None:
    path = _npz(tmp_path, **arrays)
    with pytest.raises(ValueError, match=f"{re.escape(path)} [xy](_test)?: the (images|labels) array is empty"):
        load_source("npz", path=path)


def test_npz_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data.path"):
        load_source("npz", path=str(tmp_path / "nope.npz"))
    with pytest.raises(FileNotFoundError):
        load_source("npz", path="")


# --- image folder ---------------------------------------------------------------------------


def _write_folder(root: Path, mode: str, ext: str, per_class: int = 3, classes: tuple[str, ...] = ("cat", "dog")) -> None:
    colors = {"L": (0, 255), "RGB": ((255, 0, 0), (0, 0, 255))}[mode]
    for c, color in zip(classes, colors):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new(mode, (10 + i, 7), color).save(root / c / f"img{i}{ext}")


@pytest.mark.parametrize("mode, ext", [("L", ".png"), ("RGB", ".png"), ("L", ".jpg"), ("RGB", ".jpeg")])
@pytest.mark.parametrize("channels", [1, 3])
def test_folder_source(tmp_path: Path, mode: str, ext: str, channels: int) -> None:
    _write_folder(tmp_path, mode, ext)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    train, test = load_source("folder", path=str(tmp_path), image_size=6, channels=channels, test_fraction=0.5, seed=0)
    assert train.shape == test.shape == (channels, 6, 6)
    assert len(train) == len(test) == 3
    assert train.num_classes == 2
    ids = torch.cat([train.ids, test.ids])
    labels = torch.cat([train.y, test.y])
    assert sorted(ids.tolist()) == list(range(6))
    for i, y in zip(ids.tolist(), labels.tolist()):
        assert y == (0 if i < 3 else 1)  # sorted class folders, sorted files
    xs = torch.cat([train.x[:], test.x[:]])  # lazy images: indexing reads them
    cat = xs[labels == 0].mean(dim=(0, 2, 3))
    dog = xs[labels == 1].mean(dim=(0, 2, 3))
    tol = 0.1
    if mode == "L":  # black cats, white dogs
        assert (cat + 1).abs().max() < tol and (dog - 1).abs().max() < tol
    elif channels == 3:  # red cats, blue dogs
        torch.testing.assert_close(cat, torch.tensor([1.0, -1.0, -1.0]), atol=tol, rtol=0)
        torch.testing.assert_close(dog, torch.tensor([-1.0, -1.0, 1.0]), atol=tol, rtol=0)
    else:  # colours converted to grayscale: red brighter than blue, both mid-grey
        assert cat.item() > dog.item() and -1 + tol < dog.item() < cat.item() < 1 - tol


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="folder"):
        load_source("folder", path=str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no PNG/JPEG"):
        load_source("folder", path=str(empty))
    one = tmp_path / "one"
    _write_folder(one, "L", ".png", classes=("only",))
    with pytest.raises(ValueError, match="only one class"):
        load_source("folder", path=str(one))
    two = tmp_path / "two"
    _write_folder(two, "L", ".png")
    with pytest.raises(ValueError, match="channels"):
        load_source("folder", path=str(two), channels=2)
    (two / "dog" / "broken.png").write_bytes(b"this is not a png at all" * 4)
    with pytest.raises(ValueError, match="broken.png"):
        load_source("folder", path=str(two))


# --- splits ---------------------------------------------------------------------------------


def test_splits_disjoint_stable_and_checked() -> None:
    train, test = _imageset(50, id_offset=1000), _imageset(10, seed=1)
    s = make_splits(train, test, reference_size=12, seed=3)
    assert len(s.reference) == 12 and len(s.pool) == 38 and s.test is test
    pool_ids, ref_ids = set(s.pool.ids.tolist()), set(s.reference.ids.tolist())
    assert not pool_ids & ref_ids
    assert pool_ids | ref_ids == set(range(1000, 1050))
    # ids stay attached to their images and labels
    for part in (s.pool, s.reference):
        pos = part.ids - 1000
        assert torch.equal(part.x, train.x[pos]) and torch.equal(part.y, train.y[pos])
    again = make_splits(train, test, reference_size=12, seed=3)
    assert torch.equal(again.pool.ids, s.pool.ids) and torch.equal(again.reference.ids, s.reference.ids)
    assert not torch.equal(make_splits(train, test, reference_size=12, seed=4).reference.ids, s.reference.ids)
    small = make_splits(train, test, reference_size=12, pool_size=20, seed=3)
    assert len(small.pool) == 20 and not set(small.pool.ids.tolist()) & ref_ids
    for kwargs in ({"reference_size": 50}, {"reference_size": 60}, {"reference_size": 40, "pool_size": 11},
                   {"reference_size": -1}):
        with pytest.raises(ValueError, match="reference_size"):
            make_splits(train, test, **kwargs)
    with pytest.raises(ValueError, match="test images"):
        make_splits(train, _imageset(5, shape=(1, 5, 5)), reference_size=5)


def test_validation_split_is_held_out_of_training_and_leaves_the_rest_as_it_was() -> None:
    train, test = _imageset(50, id_offset=1000), _imageset(10, seed=1)
    plain = make_splits(train, test, reference_size=12, seed=3)
    for order in ("permutation", "bijection"):
        s = make_splits(train, test, reference_size=12, seed=3, val_size=8, order=order)
        val, pool, ref = (set(p.ids.tolist()) for p in (s.test, s.pool, s.reference))
        assert len(val) == 8 and len(pool) == 30 and len(ref) == 12  # the test split is never returned
        assert not val & pool and not val & ref and val | pool | ref == set(range(1000, 1050))
        assert torch.equal(s.test.x, train.x[s.test.ids - 1000]) and torch.equal(s.test.y, train.y[s.test.ids - 1000])
        base = make_splits(train, test, reference_size=12, seed=3, order=order)
        assert torch.equal(torch.as_tensor(s.reference.ids), torch.as_tensor(base.reference.ids))  # same curated set
        assert torch.equal(torch.as_tensor(s.pool.ids), torch.as_tensor(base.pool.ids)[:30])  # the pool's order kept
    assert plain.test is test
    with pytest.raises(ValueError, match="val_size"):
        make_splits(train, test, reference_size=12, pool_size=30, val_size=9)
    with pytest.raises(ValueError, match="val_size"):
        make_splits(train, test, reference_size=12, val_size=-1)


def test_validation_runs_evaluate_on_it_and_say_so(tmp_path) -> None:
    from learnability.cli import main
    base = ["run", "--data.source=digits", "--data.reference_size=200", "--data.label_noise=0.2", "--train.steps=4",
            "--train.batch_size=16", "--train.eval_every=2", "--model.learner=mlp_small", "--reference.epochs=1"]
    assert main(base + [f"--out={tmp_path / 'test'}"]) == 0
    assert main(base + ["--data.val_size=300", f"--out={tmp_path / 'val'}"]) == 0
    import json
    test, val = (json.loads((tmp_path / k / "summary.json").read_text()) for k in ("test", "val"))
    assert test["eval_split"] == "test" and val["eval_split"] == "validation"
    assert val["pool_size"] == test["pool_size"] - 300
    assert main(base + ["--data.val_size=-1", f"--out={tmp_path / 'bad'}"]) == 2


def test_build_data_reference_too_large() -> None:
    with pytest.raises(ValueError, match="reference_size"):
        build_data(DataConfig(source="digits", reference_size=5000))


# --- corruption -----------------------------------------------------------------------------


def test_corruption_fractions_codes_and_labels() -> None:
    pool = _imageset(200, k=5)
    before = copy.deepcopy(pool)
    out = corrupt(pool, label_noise=0.3, duplicates=0.1, junk=0.05, seed=11)
    code = out.corruption
    assert int((code == LABEL_NOISE).sum()) == 60
    assert int((code == DUPLICATE).sum()) == 20
    assert int((code == JUNK).sum()) == 10
    assert int((code == CLEAN).sum()) == 110
    assert torch.equal(out.ids, pool.ids)
    noisy = code == LABEL_NOISE
    assert (out.y[noisy] != out.true_y[noisy]).all()
    assert torch.equal(out.true_y[noisy], pool.y[noisy])
    assert torch.equal(out.x[noisy], pool.x[noisy])
    clean = code == CLEAN
    assert torch.equal(out.y[clean], pool.y[clean]) and torch.equal(out.x[clean], pool.x[clean])
    # duplicates are near-copies of clean examples, with their labels
    clean_x, clean_y = pool.x[clean], pool.y[clean]
    for i in torch.nonzero(code == DUPLICATE).flatten().tolist():
        dist = (clean_x - out.x[i]).abs().flatten(1).max(dim=1).values
        j = int(dist.argmin())
        assert dist[j] < 0.4 and int(clean_y[j]) == int(out.y[i]) == int(out.true_y[i])
        assert not torch.equal(out.x[i], pool.x[i])
    junk = out.x[code == JUNK]
    assert float(junk.min()) >= -1.0 and float(junk.max()) <= 1.0
    # the input is untouched
    for name in ("x", "y", "ids", "corruption", "true_y"):
        assert torch.equal(getattr(pool, name), getattr(before, name)), name


def test_corruption_is_seeded() -> None:
    pool = _imageset(100, k=4)
    a = corrupt(pool, label_noise=0.2, duplicates=0.1, junk=0.1, seed=5)
    b = corrupt(pool, label_noise=0.2, duplicates=0.1, junk=0.1, seed=5)
    c = corrupt(pool, label_noise=0.2, duplicates=0.1, junk=0.1, seed=6)
    for name in ("x", "y", "corruption", "true_y"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.corruption, c.corruption)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_label_noise_two_classes_always_flips() -> None:
    pool = _imageset(40, k=2)
    out = corrupt(pool, label_noise=0.5, seed=0)
    noisy = out.corruption == LABEL_NOISE
    assert int(noisy.sum()) == 20
    assert torch.equal(out.y[noisy], 1 - pool.y[noisy])


def test_corruption_rejects_bad_fractions() -> None:
    pool = _imageset(20)
    for kwargs in ({"label_noise": 1.0}, {"label_noise": -0.1}, {"junk": 1.5}, {"duplicates": -0.2},
                   {"label_noise": 0.5, "junk": 0.3, "duplicates": 0.2}):
        with pytest.raises(ValueError, match="data."):
            corrupt(pool, **kwargs)
    with pytest.raises(ValueError, match="2 classes"):
        corrupt(_imageset(10, k=1), label_noise=0.2)


def test_build_data_corrupts_only_the_pool() -> None:
    cfg = DataConfig(source="digits", reference_size=300, label_noise=0.4, duplicates=0.1, junk=0.05, test_size=100,
                     seed=2)
    s = build_data(cfg)
    train, test = load_source("digits", test_fraction=cfg.test_fraction, seed=cfg.seed)
    assert len(s.test) == 100 and len(s.reference) == 300 and len(s.pool) == len(train) - 300
    for part, source in ((s.reference, train), (s.test, test)):
        assert (part.corruption == CLEAN).all()
        pos = torch.searchsorted(source.ids, part.ids)
        assert torch.equal(source.ids[pos], part.ids)
        assert torch.equal(part.x, source.x[pos]) and torch.equal(part.y, source.y[pos])
    n = len(s.pool)
    assert int((s.pool.corruption == LABEL_NOISE).sum()) == round(0.4 * n)
    assert int((s.pool.corruption == DUPLICATE).sum()) == round(0.1 * n)
    assert int((s.pool.corruption == JUNK).sum()) == round(0.05 * n)
    assert build_data(cfg).pool.fingerprint() == s.pool.fingerprint()


# --- IndexStream ----------------------------------------------------------------------------


def test_index_stream_epochs_and_boundaries() -> None:
    stream = IndexStream(10, 4, seed=0)
    batches = [stream.next() for _ in range(5)]  # 20 indices = exactly 2 epochs
    assert all(b.shape == (4,) and b.dtype == torch.int64 for b in batches)
    flat = torch.cat(batches).tolist()
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert flat[:10] != flat[10:]  # reshuffled
    # the third batch crosses the boundary: the last 2 of epoch 0, then the first 2 of epoch 1
    assert set(batches[2][:2].tolist()) == set(range(10)) - set(flat[:8])
    assert set(batches[2][2:].tolist()) == set(range(10)) - set(flat[12:20])
    assert stream.epoch == 2 and stream.pos == 0 and stream.drawn == 20


def test_index_stream_batch_larger_than_pool() -> None:
    stream = IndexStream(3, 7, seed=1)
    b = stream.next().tolist()
    assert len(b) == 7
    assert sorted(b[:3]) == sorted(b[3:6]) == [0, 1, 2]
    assert stream.epoch == 2 and stream.pos == 1


def test_index_stream_state_round_trip() -> None:
    stream = IndexStream(10, 4, seed=3)
    for _ in range(3):
        stream.next()
    state = copy.deepcopy(stream.state_dict())
    future = [stream.next() for _ in range(6)]
    other = IndexStream(10, 4, seed=99)
    other.load_state_dict(state)
    assert all(torch.equal(a, other.next()) for a in future)
    assert other.drawn == stream.drawn and other.epoch == stream.epoch
    # same seed, same stream; another seed, another stream
    assert torch.equal(IndexStream(10, 4, seed=3).next(), IndexStream(10, 4, seed=3).next())
    assert not torch.equal(IndexStream(10, 4, seed=3).next(), IndexStream(10, 4, seed=4).next())


def test_coverage_counts_distinct_positions_and_round_trips() -> None:
    cov = Coverage(21)  # not a multiple of 8: the last byte is partly used
    assert cov.add(torch.tensor([0, 7, 8, 20, 20])) == pytest.approx(4 / 21)  # a repeat within a batch counts once
    assert cov.add(torch.tensor([[7, 8], [9, 1]])) == pytest.approx(6 / 21)  # 7, 8 seen before; 9, 1 new
    assert cov.add(torch.tensor([], dtype=torch.long)) == pytest.approx(6 / 21)
    state = copy.deepcopy(cov.state_dict())
    assert cov.add(torch.arange(21)) == 1.0
    other = Coverage(21)
    other.load_state_dict(state)
    assert other.count == 6 and other.add(torch.tensor([2])) == pytest.approx(7 / 21)
    # against a set, on random draws
    rng, ref, cov = torch.Generator().manual_seed(0), set(), Coverage(1000)
    for _ in range(50):
        pos = torch.randint(0, 1000, (64,), generator=rng)
        ref |= set(pos.tolist())
        assert cov.add(pos) == len(ref) / 1000
    with pytest.raises(ValueError, match=r"\[0, 21\)"):
        Coverage(21).add(torch.tensor([21]))
    with pytest.raises(ValueError, match="10-example pool"):
        Coverage(21).load_state_dict(Coverage(10).state_dict())
    with pytest.raises(ValueError, match="empty"):
        Coverage(0)


def test_index_stream_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        IndexStream(0, 4, seed=0)
    with pytest.raises(ValueError, match="batch"):
        IndexStream(10, 0, seed=0)
