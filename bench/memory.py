"""Memory benchmark: a run's peak RSS stays bounded as the pool grows from 10k to 1M ids.

    python bench/memory.py                  # pools of 10k, 100k and 1M ids (~10 min on 2 cores, 0.3 GB of disk)
    python bench/memory.py --quick          # pools of 5k and 20k (~1 min): the smoke variant

Each pool is synthetic 16x16 grayscale images of 10 classes (a class template plus noise), written
once as a uint8 `x.npy` + `y.npy` (the `npy` source: images are read from the file with `pread` when a
batch needs them, never loaded whole), with 2,000 extra images for the curated reference set and a
1,000-image test split. The `npy` source's default `data.order=auto` is `bijection`: the splits,
the label noise and the stream are seeded bijections computed per batch, and labels and ids are
read from `y.npy` and the row numbers, so nothing per example is held in memory. For every pool size
two fresh processes run the real loop (`learnability.loop.run`, learnability selection, mlp_small
learner, mlp_tiny proxy and reference, label noise 0.2, b = 64 of B = 128):

- `build`: 1 step; trains the reference and writes the memory-mapped reference-loss cache;
- `run`: 300 steps reading that cache (memory-mapped, checksums verified) instead of rebuilding it;
- for the middle size only, `run, in-memory npz`: the same pool through the in-memory `npz` source
  with `data.order=bijection` (same fingerprints, so it reuses the same reference and cache), to
  show what lazy images save;
- for the largest size only, `build+run, data.order=permutation`: one process that builds its own
  cache and runs the 300 steps with the `torch.randperm` shuffles (int32/int64 arrays per example),
  to show what the bijections save.

Each process reports its peak RSS (VmHWM from /proc/self/status, which counts touched pages of
memory-mapped files too), the cache's size on disk, and the bytes of per-id metadata it holds in
memory (labels, true labels, ids and corruption codes held as tensors, explicit row maps of the
splits, and the stream's permutation; lazy columns and maps count 0). The table compares each pool's peak RSS growth over the smallest
pool with the cache's size. Writes bench/results/memory[-quick].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES, QUICK_SIZES = (10_000, 100_000, 1_000_000), (5_000, 20_000)
REFERENCE, TEST, SIDE, CLASSES, STEPS = 2_000, 1_000, 16, 10, 300


def make_pool(folder: str, n: int, seed: int = 0) -> None:
    """Write `n + REFERENCE` training and `TEST` test images (uint8 [N, 1, 16, 16]) with labels, once."""
    if os.path.exists(os.path.join(folder, "done")):
        return
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (CLASSES, 1, SIDE, SIDE)).astype(np.int16)
    for name, count in (("", n + REFERENCE), ("_test", TEST)):
        x = np.lib.format.open_memmap(os.path.join(folder, f"x{name}.npy"), mode="w+", dtype=np.uint8,
                                      shape=(count, 1, SIDE, SIDE))
        y = rng.integers(0, CLASSES, count)
        for i in range(0, count, 100_000):
            part = templates[y[i:i + 100_000]] + rng.integers(-60, 61, (len(y[i:i + 100_000]), 1, SIDE, SIDE))
            x[i:i + 100_000] = part.clip(0, 255).astype(np.uint8)
        x.flush()
        del x
        np.save(os.path.join(folder, f"y{name}.npy"), y)
    open(os.path.join(folder, "done"), "w").close()


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def write_npz(folder: str) -> str:
    """The same pool as one `.npz` (the in-memory `npz` source), for the comparison row."""
    path = os.path.join(folder, "pool.npz")
    if not os.path.exists(path):
        np.savez(path, **{k: np.load(os.path.join(folder, k + ".npy")) for k in ("x", "y", "x_test", "y_test")})
    return path


def held_bytes(obj) -> int:
    """Bytes of per-example arrays `obj` (a tensor, numpy array, lazy column or row map) holds."""
    from learnability.data.bijection import PermutedRange
    from learnability.data.columns import Chain, LazyColumn, Range

    if isinstance(obj, torch_tensor()):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, LazyColumn):
        return held_bytes(obj.rows)
    if isinstance(obj, Chain):
        return held_bytes(obj.rows) + held_bytes(obj.index)
    if isinstance(obj, (Range, PermutedRange)):
        return 0
    raise TypeError(f"cannot size {type(obj).__name__}")


def torch_tensor():
    import torch

    return torch.Tensor


def child(folder: str, ref_dir: str, out: str, steps: int, source: str = "npy", order: str = "auto") -> dict:
    """One real run in this (fresh) process; returns its peak RSS and what it held per id."""
    import torch

    from learnability import config as C
    from learnability.data import build_data
    from learnability.loop import run

    after_import = _status_kb("VmRSS")
    cfg = C.RunConfig(
        data=C.DataConfig(source=source, path=write_npz(folder) if source == "npz" else folder,
                          reference_size=REFERENCE, label_noise=0.2, order="bijection" if source == "npz" else order),
        model=C.ModelConfig(learner="mlp_small", proxy="mlp_tiny"),
        selection=C.SelectionConfig(score="learnability"),
        reference=C.ReferenceConfig(epochs=1, batch_size=256, dir=ref_dir),
        train=C.TrainConfig(steps=steps, batch_size=64, eval_every=100, eval_batch_size=500, threads=1),
        out=out, progress=False)
    t0 = time.perf_counter()
    splits = build_data(cfg.data)
    meta = 0
    for part in (splits.pool, splits.reference, splits.test):
        meta += sum(held_bytes(t) for t in {id(c): c for c in (part.y, part.ids, part.corruption, part.true_y)}.values())
        meta += held_bytes(part.x.rows) if part.lazy else 0
    if C.data_order(cfg.data) == "permutation":
        meta += 4 * len(splits.pool)  # IndexStream's int32 permutation of the pool
    summary = run(cfg, splits)
    with open(os.path.join(ref_dir, "losses.json")) as f:
        cache = json.load(f)
    cache_bytes = sum(os.path.getsize(os.path.join(ref_dir, f)) for f in cache["files"].values())
    return {"pool": len(splits.pool), "steps": steps, "peak_rss_mb": _status_kb("VmHWM") / 1024,
            "rss_after_import_mb": after_import / 1024, "cache_bytes": cache_bytes, "metadata_bytes": meta,
            "final_accuracy": summary["final_accuracy"], "seconds": time.perf_counter() - t0,
            "torch": torch.__version__}


def _spawn(folder: str, ref_dir: str, out: str, steps: int, source: str = "npy", order: str = "auto") -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(HERE, "..", "src"), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, __file__, "--child", folder, ref_dir, out, str(steps), source, order],
                         capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"the child run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    """Per pool and phase (medians over repeats): peak RSS, its growth over the smallest pool's, and
    what that growth is made of: the cache on disk (memory-mapped: at most its size), per-id
    metadata held in memory, and the rest (transient copies while loading, allocator slack)."""
    mb = 2 ** 20
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["pool"], r["phase"]), []).append(r)
    rows = [{**g[0], "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in g), "repeats": len(g),
             "range_mb": max(x["peak_rss_mb"] for x in g) - min(x["peak_rss_mb"] for x in g)} for g in groups.values()]
    lines = ["| pool ids | phase | repeats | peak RSS (MB, median) | spread (MB) | growth over smallest (MB) | cache size (MB) "
             "| cache growth (MB) | metadata growth (MB) | rest (MB) | growth <= cache size? | growth <= cache growth? |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    smallest = min(r["pool"] for r in rows)
    for r in rows:
        phases = ("build", "run") if r["phase"].startswith("build+run") else (r["phase"].split(",")[0],)
        b = max((x for x in rows if x["phase"] in phases and x["pool"] == smallest), key=lambda x: x["peak_rss_mb"])
        growth = r["peak_rss_mb"] - b["peak_rss_mb"]
        cache = (r["cache_bytes"] - b["cache_bytes"]) / mb
        meta = (r["metadata_bytes"] - b["metadata_bytes"]) / mb
        size = r["cache_bytes"] / mb
        ok = ["" if r["pool"] == smallest else ("yes" if growth <= limit else "no") for limit in (size, cache)]
        lines.append(f"| {r['pool']:,} | {r['phase']} | {r['repeats']} | {r['peak_rss_mb']:.1f} | {r['range_mb']:.1f} | {growth:+.2f} | "
                     f"{size:.2f} | {cache:.2f} | {meta:.1f} | {growth - cache - meta:+.1f} | {ok[0]} | {ok[1]} |")
    return "\n".join(lines)


def write_results(rows: list[dict], quick: bool) -> str:
    from learnability.io import atomic_write_text

    name = "memory-quick" if quick else "memory"
    cmd = "python bench/memory.py" + (" --quick" if quick else "")
    atomic_write_text(os.path.join(HERE, "results", f"{name}.json"), json.dumps({"command": cmd, "rows": rows}, indent=2) + "\n")
    md = (f"# Peak RSS vs pool size\n\n`{cmd}` (torch {rows[0]['torch']}, 1 thread, `npy` source with "
          f"`data.order=auto` = bijection unless the phase says otherwise; `build` = train the reference and "
          f"write the cache, 1 step; `run` = {STEPS} steps reading the memory-mapped cache; each a fresh process, "
          f"medians over repeats; peak RSS is VmHWM, which counts the touched pages of the memory-mapped cache; "
          f"per-id metadata = labels, true labels, ids and corruption codes held as tensors, explicit row maps "
          f"and the stream's permutation)\n\n{table(rows)}\n")
    atomic_write_text(os.path.join(HERE, "results", f"{name}.md"), md)
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "learnability-bench-memory"))
    ap.add_argument("--table-only", action="store_true", help="re-render the .md from the saved .json")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per pool and phase (the table shows medians)")
    args = ap.parse_args()
    if args.table_only:
        with open(os.path.join(HERE, "results", "memory-quick.json" if args.quick else "memory.json")) as f:
            print(write_results(json.load(f)["rows"], args.quick))
        return
    sizes = QUICK_SIZES if args.quick else SIZES
    rows = []
    for n in sizes:
        folder = os.path.join(args.data_dir, f"pool-{n}")
        make_pool(folder, n)
        ref_dir = os.path.join(args.data_dir, "runs", f"reference-{n}")
        for rep in range(args.repeats):  # fresh processes each time: peak RSS varies by a MB or so
            for phase, steps in (("build", 1), ("run", STEPS)):
                if phase == "build" and os.path.exists(ref_dir):
                    shutil.rmtree(ref_dir)
                out = os.path.join(args.data_dir, "runs", f"{phase}-{n}-{rep}")
                shutil.rmtree(out, ignore_errors=True)
                r = {"phase": phase, "repeat": rep, **_spawn(folder, ref_dir, out, steps)}
                print(json.dumps(r), flush=True)
                rows.append(r)
        if n == sizes[1]:  # the same pool held in memory (npz source): same fingerprints, so it reuses the cache
            r = {"phase": "run, in-memory npz", **_spawn(folder, ref_dir, os.path.join(args.data_dir, "runs", f"npz-{n}"),
                                                          STEPS, "npz")}
            print(json.dumps(r), flush=True)
            rows.append(r)
        if n == sizes[-1]:  # the permutation shuffles, for comparison: build and run in one process
            perm_dir = os.path.join(args.data_dir, "runs", f"reference-{n}-permutation")
            shutil.rmtree(perm_dir, ignore_errors=True)
            r = {"phase": "build+run, data.order=permutation",
                 **_spawn(folder, perm_dir, os.path.join(args.data_dir, "runs", f"perm-{n}"), STEPS, "npy", "permutation")}
            print(json.dumps(r), flush=True)
            rows.append(r)
    print(write_results(rows, args.quick))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7])))
    else:
        sys.path.insert(0, os.path.join(HERE, "..", "src"))
        main()
