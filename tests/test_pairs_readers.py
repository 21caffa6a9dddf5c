"""A user's pairs: JSON-lines files and webdataset tar shards (streamed), bad input, skip counting."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learnability.pairs import JsonlPairs, ShardPairs, collect, expand_shards, shard_id, split_shard_id
from learnability.pairs.shards import expand_braces


def _image_bytes(seed: int, fmt: str = "PNG", size: int = 12, mode: str = "RGB") -> bytes:
    a = np.random.default_rng(seed).integers(0, 256, (size, size, 3 if mode == "RGB" else 1), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a if mode == "RGB" else a[..., 0], mode).save(buf, format=fmt)
    return buf.getvalue()


def _write_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _sample(key: str, seed: int, text: str = "a red bag", ext: str = "png") -> list[tuple[str, bytes]]:
    return [(f"{key}.{ext}", _image_bytes(seed, "PNG" if ext == "png" else "JPEG")), (f"{key}.txt", text.encode())]


# --- JSON lines ------------------------------------------------------------------------------


def test_jsonl_reads_resizes_and_keeps_line_ids(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(_image_bytes(0, "PNG", mode="L"))
    (tmp_path / "b.jpg").write_bytes(_image_bytes(1, "JPEG", size=20))
    rows = [{"image": "img/a.png", "text": " a grey square "}, {"image": str(tmp_path / "b.jpg"), "text": "noise"}]
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    reader = JsonlPairs(str(path), image_size=8)
    out = list(reader)
    assert [i for i, _, _ in out] == [0, 2] and [c for _, _, c in out] == ["a grey square", "noise"]
    img = out[0][1]
    assert img.shape == (3, 8, 8) and img.dtype == torch.float32 and -1 <= float(img.min()) <= float(img.max()) <= 1
    assert torch.equal(img[0], img[1])  # grayscale became RGB
    assert reader.skipped == 0
    pairs = collect(reader)
    assert pairs.ids.tolist() == [0, 2] and pairs.ids.dtype == torch.int64 and pairs.labels is None
    assert len(collect(reader, limit=1)) == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        JsonlPairs(str(tmp_path / "none.jsonl"))
    with pytest.raises(ValueError, match="image_size"):
        JsonlPairs(str(path), image_size=0)


BAD_ROWS = [
    ('{"image": "ok.png"}', "missing key 'text'"),
    ('{"text": "a caption"}', "missing key 'image'"),
    ('{"image": "ok.png", "text": "a cap', "invalid JSON"),
    ('["ok.png", "a caption"]', "JSON object"),
    ('{"image": "nowhere.png", "text": "a caption"}', "does not exist"),
    ('{"image": "broken.png", "text": "a caption"}', "cannot decode"),
    ('{"image": "ok.png", "text": "   "}', "caption is empty"),
    ('{"image": "ok.png", "text": 7}', "must be a string"),
]


@pytest.mark.parametrize("row,message", BAD_ROWS)
def test_jsonl_bad_rows_raise_naming_the_line(tmp_path: Path, row: str, message: str) -> None:
    (tmp_path / "ok.png").write_bytes(_image_bytes(0))
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"image": "ok.png", "text": "fine"}\n' + row + "\n")
    with pytest.raises(ValueError, match=message) as e:
        list(JsonlPairs(str(path)))
    assert f"{path} line 2" in str(e.value)


def test_jsonl_skip_bad_counts(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(_image_bytes(0))
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    good = '{"image": "ok.png", "text": "fine"}'
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(("\n".join([good] + [r for r, _ in BAD_ROWS] + [good]) + "\n").encode() + b"\xff\xfe\n")
    reader = JsonlPairs(str(path), skip_bad=True)
    assert [i for i, _, _ in reader] == [0, len(BAD_ROWS) + 1]
    assert reader.skipped == len(BAD_ROWS) + 1 and "UTF-8" in reader.problems[-1]
    list(reader)
    assert reader.skipped == len(BAD_ROWS) + 1  # counts restart with each pass


# --- tar shards ------------------------------------------------------------------------------


def test_shards_read_in_order_with_stable_ids(tmp_path: Path) -> None:
    for s in range(3):
        _write_tar(tmp_path / f"shard-{s:03d}.tar", _sample(f"s{s}/a", s, f"caption {s}a", "jpg")
                   + [("s%d/a.json" % s, b"{}")] + _sample(f"s{s}/b", 10 + s, f"caption {s}b"))
    reader = ShardPairs(str(tmp_path / "shard-{000..002}.tar"), image_size=10)
    out = list(reader)
    assert [c for _, _, c in out] == ["caption 0a", "caption 0b", "caption 1a", "caption 1b", "caption 2a", "caption 2b"]
    assert [i for i, _, _ in out] == [shard_id(s, p) for s in range(3) for p in range(2)]
    assert out[3][0] == 2 ** 32 + 1 and split_shard_id(out[3][0]) == (1, 1)
    assert out[0][1].shape == (3, 10, 10)
    globbed = ShardPairs(str(tmp_path / "shard-*.tar"))
    assert [c for _, _, c in globbed] == [c for _, _, c in out]
    gz = _write_tar(tmp_path / "z.tar.gz", _sample("k", 0, "zipped"), mode="w:gz")
    assert [c for _, _, c in ShardPairs([str(gz)])] == ["zipped"]
    assert collect(ShardPairs([str(gz)])).ids.tolist() == [0]


@pytest.mark.parametrize("members,message", [
    ([("k.png", _image_bytes(0))], "no text"),
    ([("k.txt", b"a caption")], "no image"),
    ([("k.png", b"garbage"), ("k.txt", b"a caption")], "cannot decode"),
    ([("k.png", _image_bytes(0)), ("k.txt", b"  \n")], "caption is empty"),
    ([("k.png", _image_bytes(0)), ("k.txt", b"\xff\xfe")], "UTF-8"),
    ([("k.png", _image_bytes(0)), ("k.jpg", _image_bytes(1, "JPEG")), ("k.txt", b"x")], "more than one image"),
])
def test_shard_bad_keys_raise_and_skip(tmp_path: Path, members: list, message: str) -> None:
    path = _write_tar(tmp_path / "bad.tar", _sample("first", 0) + members + _sample("last", 1, "the end"))
    with pytest.raises(ValueError, match=message) as e:
        list(ShardPairs(str(path)))
    assert "bad.tar key 'k'" in str(e.value)
    reader = ShardPairs(str(path), skip_bad=True)
    assert [(i, c) for i, _, c in reader] == [(0, "a red bag"), (2, "the end")]
    assert reader.skipped == 1 and message in reader.problems[0]


def test_shard_reader_streams(tmp_path: Path) -> None:
    members = [m for k in range(40) for m in _sample(f"{k:04d}", k, f"caption {k}")]
    data = _write_tar(tmp_path / "big.tar", [(n, d if n.endswith(".txt") else _image_bytes(int(n[:4]), size=40))
                                             for n, d in members]).read_bytes()

    class Counting(io.BytesIO):
        consumed = 0

        def read(self, n: int = -1) -> bytes:
            chunk = super().read(n)
            Counting.consumed += len(chunk)
            return chunk

    it = iter(ShardPairs([Counting(data)]))
    assert next(it)[2] == "caption 0"
    assert Counting.consumed < len(data) / 4, (Counting.consumed, len(data))
    assert len(list(it)) == 39 and Counting.consumed > len(data) / 2


def test_truncated_shard(tmp_path: Path) -> None:
    members = [m for k in range(6) for m in _sample(f"{k}", k, f"caption {k}")]
    full = _write_tar(tmp_path / "full.tar", members).read_bytes()
    with tarfile.open(tmp_path / "full.tar") as tar:
        middle = tar.getmembers()[4]  # 2.png: cut inside its data (a cut inside a header ends the tar silently)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(full[:middle.offset_data + 10])
    seen = []
    with pytest.raises(ValueError, match="cut.tar"):
        for _, _, c in ShardPairs(str(cut)):
            seen.append(c)
    assert seen == ["caption 0", "caption 1"]  # yielded before the damage was reached
    reader = ShardPairs([str(cut), str(tmp_path / "full.tar")], skip_bad=True)
    captions = [c for _, _, c in reader]
    assert captions[:len(seen)] == seen and captions[-6:] == [f"caption {k}" for k in range(6)]
    assert reader.skipped == 1 and "truncated" in reader.problems[0]
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.tar"):
        list(ShardPairs(str(tmp_path / "empty.tar")))


def test_shard_patterns(tmp_path: Path) -> None:
    assert expand_braces("d/{000..002}.tar") == ["d/000.tar", "d/001.tar", "d/002.tar"]
    assert expand_braces("{a,b}-{8..10}") == ["a-8", "a-9", "a-10", "b-8", "b-9", "b-10"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    with pytest.raises(ValueError, match="backwards"):
        expand_braces("{5..2}.tar")
    with pytest.raises(ValueError, match="cannot expand"):
        expand_braces("{x}.tar")
    with pytest.raises(ValueError, match="unbalanced"):
        expand_braces("{0..2.tar")
    _write_tar(tmp_path / "00.tar", _sample("k", 0))
    with pytest.raises(FileNotFoundError, match="01.tar"):
        expand_shards(str(tmp_path / "{00..01}.tar"))
    with pytest.raises(FileNotFoundError, match="matches no files"):
        expand_shards(str(tmp_path / "*.tgz"))
    with pytest.raises(ValueError, match="no shards"):
        ShardPairs([])
    with pytest.raises(ValueError, match="out of range"):
        shard_id(0, 2 ** 32)
