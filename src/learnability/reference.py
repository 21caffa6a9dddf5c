"""The frozen reference model: training it, saving it, and its per-id loss cache.

A reference directory holds `model.pt` (weights), `meta.json` (what it was trained on, and its
one-off FLOPs and seconds, charged to every run that uses it) and the per-id loss cache of a pool
(`losses.json` naming two memory-mapped `.npy` files, with their sha256 and fingerprints of that
pool and of the weights; see `learnability.loss_cache`). Anything that does not match what the
run needs is refused with a message that says which part differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from learnability import faults
from learnability.data.imageset import ImageSet
from learnability.data.lazy import LazyImages
from learnability.flops import ModelCost
from learnability.io import atomic_torch_save, atomic_write_text, release_free_memory
from learnability.loss_cache import CacheMismatchError, DenseIndex, ReferenceLosses, read_cache, write_cache
from learnability.batch import Batch, apply
from learnability.losses import PerExampleLoss, classification_loss, cross_entropy, score_losses, score_rows


def weights_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fit(model: nn.Module, n: int, loss_of: Callable[[torch.Tensor], torch.Tensor], *, epochs: int, batch_size: int,
        lr: float, seed: int, drop_last: bool = False, progress: bool = True, desc: str = "reference") -> int:
    """Train `model` with AdamW for `epochs` over `n` examples in seeded random batches;
    `loss_of(index)` is the scalar loss of the examples at `index`. `drop_last` skips a short
    last batch (contrastive losses need their negatives). Returns examples seen; the model is left
    in eval mode."""
    if n == 0:
        raise ValueError(f"cannot train the {desc}: its training set is empty")
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    stop = n - batch_size + 1 if drop_last else n
    model.train()
    seen = 0
    bar = tqdm(total=epochs * len(range(0, max(stop, 0), batch_size)), desc=f"train {desc}", disable=not progress,
               leave=False)
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, stop, batch_size):
            idx = perm[i:i + batch_size]
            loss = loss_of(idx)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc} training loss is {loss.item()} in epoch {epoch}; lower reference.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
            bar.update()
            faults.point("reference_train")
    bar.close()
    model.eval()
    return seen


def train_model(model: nn.Module, data: ImageSet, *, epochs: int, batch_size: int, lr: float, seed: int,
                device: torch.device, progress: bool = True, desc: str = "reference") -> int:
    """Train `model` on `data` for `epochs` with AdamW and mean cross-entropy. Returns examples seen."""
    return fit(model, len(data), lambda idx: cross_entropy(model(data.x[idx].to(device)), data.y[idx].to(device)).mean(),
               epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress, desc=desc)


@dataclasses.dataclass
class Reference:
    model: nn.Module
    one_off_flops: float      # reference training + the caching pass
    one_off_seconds: float
    losses: ReferenceLosses | None


def prepare_reference(model: nn.Module, cost: ModelCost, *, ref_dir: str, train_set: ImageSet, pool: ImageSet,
                      epochs: int, batch_size: int, lr: float, seed: int, cache: bool, device: torch.device,
                      progress: bool = True) -> Reference:
    """Classification: load the reference from `ref_dir` if it was trained on exactly this set with
    these settings, else train it and save it there; then load or build the per-id loss cache of `pool`."""
    want = {"train_fingerprint": train_set.fingerprint(), "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "seed": seed, "architecture": type(model).__name__, "input_shape": list(train_set.shape),
            "num_classes": train_set.num_classes}

    def train(m: nn.Module) -> int:
        return train_model(m, train_set, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                           progress=progress, desc="reference")

    pool_fingerprint = pool.fingerprint()
    release_free_memory()  # a pass over every pool image, a batch at a time
    ref = load_or_train_reference(
        model, cost, ref_dir=ref_dir, trained_with=want, train=train, device=device,
        cache_batch=(pool.x, pool.y) if cache else None, cache_ids=pool.ids, cache_fingerprint=pool_fingerprint)
    release_free_memory()  # and the caching pass, when it ran
    return ref


def load_or_train_reference(model: nn.Module, cost: ModelCost, *, ref_dir: str, trained_with: dict,
                            train: Callable[[nn.Module], int], device: torch.device, cache_batch: Batch | None = None,
                            cache_ids: torch.Tensor | None = None, cache_fingerprint: str = "",
                            loss_fn: PerExampleLoss = classification_loss, cache_name: str = "losses",
                            per_example: bool = True) -> Reference:
    """Any task: the reference in `ref_dir` if `meta.json` says it was trained as `trained_with`
    (refused with the differing keys otherwise), else `train(model)` (returns examples seen) and
    save. With `cache_batch`, per-id losses `loss_fn(model, batch)` of the pool are cached too, in
    the cache `cache_name` in `ref_dir` (`<name>.json` + memory-mapped `.npy` files); with `per_example=False` the cache holds the rows `[N, K]` that `loss_fn`
    returns instead (one forward pass per pool example either way)."""
    meta_path, model_path = os.path.join(ref_dir, "meta.json"), os.path.join(ref_dir, "model.pt")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        diff = [k for k, v in trained_with.items() if meta.get("trained_with", {}).get(k) != v]
        if diff:
            raise CacheMismatchError(
                f"the reference saved in {ref_dir} was trained differently ({', '.join(diff)} differ from this run); "
                f"point --reference.dir at a new folder or delete {ref_dir}")
        try:
            model.load_state_dict(torch.load(model_path, map_location=device, weights_only=True))
        except Exception as e:  # noqa: BLE001 - any unreadable file means the same thing to the user
            raise CacheMismatchError(f"cannot load the reference weights {model_path}: {e}; delete {ref_dir} to retrain") from e
        if weights_fingerprint(model) != meta["weights_fingerprint"]:
            raise CacheMismatchError(f"{model_path} does not match the checksum in {meta_path}; delete {ref_dir} to retrain")
        model.eval()
    else:
        t0 = time.perf_counter()
        seen = train(model)
        model.eval()
        meta = {"trained_with": trained_with, "examples_seen": seen, "train_flops": seen * cost.train,
                "train_seconds": time.perf_counter() - t0, "weights_fingerprint": weights_fingerprint(model)}
        atomic_torch_save(model.state_dict(), model_path)
        atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    flops, seconds = meta["train_flops"], meta["train_seconds"]
    losses = None
    if cache_batch is not None:
        losses, cache_seconds = load_or_build_cache(model, ref_dir, cache_batch, cache_ids, cache_fingerprint,
                                                    meta["weights_fingerprint"], device, loss_fn,
                                                    name=cache_name, per_example=per_example)
        flops += len(cache_ids) * cost.forward
        seconds += cache_seconds
    return Reference(model, flops, seconds, losses)


def load_or_build_cache(model: nn.Module, ref_dir: str, batch: Batch, ids: torch.Tensor, data_fp: str, weights_fp: str,
                        device: torch.device, loss_fn: PerExampleLoss = classification_loss,
                        chunk: int = 0, name: str = "losses", per_example: bool = True) -> tuple[ReferenceLosses, float]:
    """Per-id losses of the pool `batch` under the reference (or the rows `[N, K]` that `loss_fn`
    returns, with `per_example=False`), memory-mapped from the cache `name` in `ref_dir` when its fingerprints match the pool and the weights and its files pass their sha256
    (refused otherwise), else computed once, `chunk` rows at a time (0: 4096, or 512 when images
    are read from files, whose 4 MB batches would leave tens of MB of allocator slack behind over
    a big pool), and saved atomically. `batch`
    leaves may be tensors or lazy columns (anything sliced with `[i:j]` into a tensor), so a pool
    read from files is never loaded whole. A `losses.pt` of older versions is ignored (the cache is
    rebuilt beside it). Returns the losses and the seconds the caching pass took (the recorded
    time when loaded)."""
    found = read_cache(ref_dir, data_fingerprint=data_fp, weights_fingerprint=weights_fp, name=name)
    if found is not None:
        return found
    t0 = time.perf_counter()
    n, losses = len(ids), None
    chunk = chunk or (128 if any(isinstance(v, LazyImages) for v in _leaves(batch)) else 4096)
    id_chunks = lambda: (np.asarray(torch.as_tensor(ids[i:i + chunk])) for i in range(0, n, chunk))  # noqa: E731
    index = DenseIndex.of_unsorted(id_chunks)  # ids nearly a range: losses go straight to their sorted place
    for i in range(0, n, chunk):
        part = apply(_rows(batch, i, i + chunk), lambda t: t.to(device))
        out = (score_losses(model, part, loss_fn, chunk=chunk) if per_example else score_rows(model, part, loss_fn, chunk=chunk))
        if losses is None:
            losses = np.empty((n, *out.shape[1:]), dtype=np.float32)
        where = index.positions(np.asarray(torch.as_tensor(ids[i:i + chunk])))[0] if index else slice(i, i + chunk)
        losses[where] = out.cpu().numpy()
    seconds = time.perf_counter() - t0
    if not np.isfinite(losses).all():
        raise FloatingPointError("the reference gives non-finite losses on the pool; retrain it with a lower reference.lr")
    all_ids = index if index is not None else np.concatenate(list(id_chunks())) if n else np.empty(0, dtype=np.int64)
    write_cache(ref_dir, all_ids, losses, data_fingerprint=data_fp, weights_fingerprint=weights_fp, seconds=seconds, name=name)
    del losses  # the run reads the memory-mapped files from here on
    found = read_cache(ref_dir, data_fingerprint=data_fp, weights_fingerprint=weights_fp, name=name)
    if found is None:
        raise OSError(f"the reference-loss cache written to {ref_dir} has disappeared; is another run deleting it?")
    return found[0], seconds


def _leaves(batch: Batch) -> list:
    if isinstance(batch, dict):
        return [x for v in batch.values() for x in _leaves(v)]
    if isinstance(batch, (tuple, list)):
        return [x for v in batch for x in _leaves(v)]
    return [batch]


def _rows(batch: Batch, start: int, stop: int) -> Batch:
    """Rows `start:stop` of every leaf, materialised as tensors (a lazy column loads just those)."""
    if isinstance(batch, dict):
        return {k: _rows(v, start, stop) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_rows(v, start, stop) for v in batch)
    return torch.as_tensor(batch[start:stop])
