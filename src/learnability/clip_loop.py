"""The image-text loop (task=clip): ActiveCLIP and JEST. Reads top to bottom, like `loop.py`.

Per step: draw B candidate pairs; score them with the small online proxy and the frozen reference
(per example: minus the image-text dot product, cacheable per id; or, for joint selection,
the [B, B] matrix of SigLIP pair losses; batch-dependent reference losses are rebuilt from its
cached per-id embeddings); select b (independently, or jointly in chunks: JEST);
train the dual-encoder learner and the online proxy on the selection with the SigLIP (or CLIP)
loss. Evaluation: zero-shot accuracy on the clean test split (logged as `test_accuracy`, the
target metric; mean Recall@1 for unlabelled pairs) and retrieval Recall@1/5 on held-out pairs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import torch
from tqdm.auto import tqdm

from learnability import config as C
from learnability import faults
from learnability.checkpoint import Checkpointer
from learnability.batch import rows, take
from learnability.clip_eval import attribute_accuracy, embed, embed_text, retrieval_recall, zero_shot_accuracy
from learnability.contrastive import (clip_loss, clip_loss_per_example, clip_loss_per_example_from_rows, dot_product_loss,
                                      embedding_rows, joint_loss_matrix, joint_loss_matrix_from_rows, siglip_loss)
from learnability.data import IndexStream
from learnability.dual import build_dual
from learnability.flops import Ledger, measure_loss_cost
from learnability.io import atomic_write_text, ids_digest
from learnability.scores import NonFiniteLossError, get_score
from learnability.selection import is_joint
from learnability.pairs import CLEAN, class_prompts
from learnability.pairs.build import build_pairs
from learnability.pairs.noise import synthetic_vocabulary
from learnability.pairs.pairset import PairSplits
from learnability.pairs.tokenizer import WordTokenizer
from learnability.reference import fit, load_or_train_reference
from learnability.runtime import (build_selector, learner_lr, learner_step, make_ema, seeded, selection_window, start_run,
                                  super_batch_size)


def train_loss_fn(kind: str):
    """`(model, (images, tokens)) -> scalar`: the SigLIP or CLIP loss of the batch."""
    def siglip(model, batch):
        out = model(*batch)
        return siglip_loss(out["image"], out["text"], out["logit_scale"], out["logit_bias"])

    def clip(model, batch):
        out = model(*batch)
        return clip_loss(out["image"], out["text"], out["logit_scale"])

    return siglip if kind == "siglip" else clip


def actor_loss_fn(kind: str):
    """`(model, batch) -> [N]`: minus each pair's scaled dot product (independent of the rest of
    the batch, so cacheable per id), or each pair's contrastive loss within the super-batch."""
    def dot(model, batch):
        out = model(*batch)
        return dot_product_loss(out["image"], out["text"], out["logit_scale"])

    def contrastive(model, batch):
        out = model(*batch)
        return clip_loss_per_example(out["image"], out["text"], out["logit_scale"])

    return dot if kind == "dot" else contrastive


def pair_loss_fn(model, batch) -> torch.Tensor:
    """`[B, B]` SigLIP pair losses (JEST's loss matrix)."""
    out = model(*batch)
    return joint_loss_matrix(out["image"], out["text"], out["logit_scale"], out["logit_bias"])


def embedding_rows_fn(model, batch) -> torch.Tensor:
    """`[N, 2D + 2]` per-pair rows of a frozen model (embeddings, scale, bias): JEST's reference
    cache, from which `joint_loss_matrix_from_rows` rebuilds any super-batch's `[B, B]` losses."""
    out = model(*batch)
    return embedding_rows(out["image"], out["text"], out["logit_scale"], out["logit_bias"])


def train_pairs(model, images, tokens, *, epochs, batch_size, lr, seed, loss_fn, device, progress) -> int:
    """Train `model` on pairs with `loss_fn` (AdamW); returns examples seen."""
    return fit(model, images.shape[0], lambda idx: loss_fn(model, (images[idx].to(device), tokens[idx].to(device))),
               epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, drop_last=True, progress=progress)


def run_clip(cfg: C.RunConfig, data: tuple[PairSplits, int] | None = None, resume: bool = False) -> dict:
    """Train one image-text arm as configured; returns the summary also written to `summary.json`.
    With `resume`, continue from the newest good checkpoint in `cfg.out` (from the start if none)."""
    device, autocast = start_run(cfg)
    t, s, p, r = cfg.train, cfg.selection, cfg.pairs, cfg.reference

    # Data: pairs, a tokenizer (the grammar's words for built-in pairs, else the training captions'; saved), token ids.
    splits, skipped = data if data is not None else build_pairs(cfg)
    pool, ref_set, test = splits.pool, splits.reference, splits.test
    tokenizer = (WordTokenizer(synthetic_vocabulary(), p.max_len) if p.source == "synthetic" and p.vocab == "auto"
                 else WordTokenizer.build(pool.captions + ref_set.captions, max_len=p.max_len))  # auto: same ids whatever the noise
    tokenizer.save(os.path.join(cfg.out, "tokenizer.json"))
    images, tokens = pool.images, tokenizer.encode(pool.captions)
    selecting = s.score != "uniform"
    b, big_b = t.batch_size, super_batch_size(cfg, len(pool), selecting)
    shape, vocab = tuple(images.shape[1:]), tokenizer.vocab_size
    train_loss, actor_loss = train_loss_fn(p.loss), actor_loss_fn(p.actor_loss)

    # Models: the dual-encoder learner (EMA for evaluation), the online proxy and the reference.
    init = {"init_scale": p.logit_scale_init, "init_bias": p.logit_bias_init}
    learner = seeded(lambda: build_dual(p.learner, shape, vocab, p.max_len, **init), t.seed, device)
    optimizer = torch.optim.AdamW(learner.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    learner_cost = measure_loss_cost(learner, train_loss, (images[:b], tokens[:b]))
    ema, ema_flops = make_ema(learner, t.ema)
    ledger = Ledger()
    selector = None
    if selecting:
        needs = get_score(s.score).needs
        joint = is_joint(s.sampler)
        proxy = (seeded(lambda: build_dual(p.proxy, shape, vocab, p.max_len, **init), t.seed + 1, device)
                 if "online" in needs else None)
        reference, ref_losses = None, None
        # dot: per-id reference losses; joint or contrastive losses depend on the super-batch: per-id embeddings
        by_rows = joint or p.actor_loss != "dot"
        if "reference" in needs:
            reference = seeded(lambda: build_dual(p.proxy, shape, vocab, p.max_len, **init), t.seed + 2, device)
            ref_tokens = tokenizer.encode(ref_set.captions)
            vocab_fp = hashlib.sha256("\n".join(tokenizer.vocab).encode()).hexdigest()
            want = {"train_fingerprint": ref_set.fingerprint(), "vocab": vocab_fp, "epochs": r.epochs,
                    "batch_size": r.batch_size, "lr": r.lr, "seed": t.seed + 2, "architecture": p.proxy,
                    "loss": p.loss, **init, "input_shape": list(shape), "max_len": p.max_len}
            ref = load_or_train_reference(
                reference, measure_loss_cost(reference, train_loss, (ref_set.images[:r.batch_size], ref_tokens[:r.batch_size])),
                ref_dir=r.dir or os.path.join(cfg.out, "reference"), trained_with=want, device=device,
                train=lambda m: train_pairs(m, ref_set.images, ref_tokens, epochs=r.epochs, batch_size=r.batch_size,
                                            lr=r.lr, seed=t.seed + 2, loss_fn=train_loss, device=device,
                                            progress=cfg.progress),
                cache_batch=(images, tokens) if r.cache else None, cache_ids=pool.ids,
                cache_fingerprint=pool.fingerprint() + vocab_fp, loss_fn=embedding_rows_fn if by_rows else actor_loss,
                cache_name="embeddings" if by_rows else "losses", per_example=not by_rows)
            ledger.add("reference", flops=ref.one_off_flops, seconds=ref.one_off_seconds)
            ref_losses = ref.losses
        selector = build_selector(cfg, proxy=proxy, reference=reference, reference_losses=ref_losses,
                                  learner=learner, ledger=ledger, autocast=autocast, loss_fn=actor_loss,
                                  train_loss_fn=train_loss, pair_loss_fn=pair_loss_fn, n_chunks=p.n_chunks,
                                  reference_rows_fn=(joint_loss_matrix_from_rows if joint else clip_loss_per_example_from_rows)
                                  if by_rows and ref_losses is not None else None)

    # Evaluation data: class prompts for zero-shot, the first `retrieval_size` clean test pairs.
    prompts = tokenizer.encode(class_prompts(test.class_names)) if test.labels is not None and test.class_names else None
    test_tokens = tokenizer.encode(test.captions)
    n_ret = min(p.retrieval_size, len(test))
    stream = IndexStream(len(pool), big_b, t.seed + 5)
    parts = {"learner": learner, "optimizer": optimizer, "ema": ema, "selector": selector, "ledger": ledger,
             "stream": stream}
    ckpt = Checkpointer(cfg.out, cfg.checkpoint.every, cfg.checkpoint.keep, resume)
    first, saved, metrics = ckpt.resume(parts, os.path.join(cfg.out, "metrics.jsonl"))
    accuracy = saved.get("accuracy", float("nan"))
    arm = cfg.name or s.score
    bar = tqdm(range(first, t.steps + 1), desc=f"train {arm}", disable=not cfg.progress, leave=False,
               initial=first - 1, total=t.steps)

    for step in bar:
        # 1. Draw B candidate pairs (b when training uniformly).
        t0 = time.perf_counter()
        pos = stream.next()
        batch, ids = (images[pos].to(device), tokens[pos].to(device)), pool.ids[pos]
        ledger.add("data", seconds=time.perf_counter() - t0)
        row: dict = {"step": step}

        # 2-3. Score with the proxies; select b, independently or jointly (JEST); outside selection.start/end: the first b.
        active, proxy_on = selection_window(cfg, step)
        if selector is not None and not active:
            pos, batch = pos[:b], rows(batch, 0, b)
        elif selector is not None:
            sel = selector.select_index(batch, ids)
            for kind, v in sel.losses.items():
                row[f"loss_{kind}_candidates"] = float(v.mean())
            pos, batch = pos[sel.index.cpu()], take(batch, sel.index)

        # 4. Train the learner on the selection, then the online proxy on the same pairs.
        t0 = time.perf_counter()
        loss = learner_step(learner, optimizer, ema, lambda: train_loss(learner, batch), device=device,
                            autocast=autocast, where=f"arm {arm}, at step {step} (files kept in {cfg.out})",
                            lr=learner_lr(cfg, step))
        ledger.add("learner", flops=learner_cost.train * b + ema_flops, seconds=time.perf_counter() - t0)
        if selector is not None and selector.proxy is not None and proxy_on:
            try:
                row["loss_proxy"] = selector.train_proxy(batch)
            except FloatingPointError as e:
                raise NonFiniteLossError(f"arm {arm}, step {step}: {e}; the run's files are kept in {cfg.out}") from e

        # Log: cumulative FLOPs and seconds, corrupted fraction selected, zero-shot and retrieval.
        code = pool.corruption[pos]
        row.update({"examples_seen": step * b, "candidates_drawn": stream.drawn, "loss_learner": loss.item(),
                    "selected_digest": ids_digest(pool.ids[pos]),
                    "corrupted_selected": float((code != CLEAN).float().mean()), "skipped_bad_rows": skipped})
        row.update(ledger.row())
        if step % t.eval_every == 0 or step == t.steps:
            t0 = time.perf_counter()
            model = ema.module if ema is not None else learner
            img, txt = embed(model, test.images, test_tokens, t.eval_batch_size, device, autocast)
            row.update(retrieval_recall(img[:n_ret], txt[:n_ret]))
            if prompts is not None:
                _, class_txt = embed(model, test.images[:len(prompts)], prompts, t.eval_batch_size, device, autocast)
                accuracy = row["zero_shot"] = zero_shot_accuracy(img, class_txt, test.labels)
            else:
                accuracy = (row["r1_i2t"] + row["r1_t2i"]) / 2
            row["test_accuracy"] = accuracy
            if step == t.steps and test.attributes is not None and test.style is not None:  # per attribute, once
                row.update(attribute_accuracy(img[:n_ret], test.attributes, test.style, lambda texts: embed_text(
                    model, tokenizer.encode(texts), t.eval_batch_size, device, autocast)))
            ledger.add("eval", seconds=time.perf_counter() - t0)
            row["seconds_eval"] = ledger.seconds["eval"]
            bar.set_postfix(acc=f"{accuracy:.3f}")
        metrics.write(row)
        ckpt.maybe_save(step, parts, metrics_rows=step, accuracy=accuracy)
        faults.point("step")
    metrics.close()

    summary = {
        "arm": arm, "task": "clip", "steps": t.steps, "batch_size": b, "super_batch": big_b,
        "final_accuracy": accuracy, "learner_flops_per_example": {"forward": learner_cost.forward, "train": learner_cost.train},
        "proxy_flops_ratio": (learner_cost.forward / selector.cost("proxy", batch).forward)
        if selector is not None and selector.proxy is not None else None,
        "ledger": ledger.state_dict(), "pool_size": len(pool), "skipped_bad_rows": skipped,
        "pool_corrupted": float((pool.corruption != CLEAN).float().mean()),
    }
    atomic_write_text(os.path.join(cfg.out, "summary.json"), json.dumps(summary, indent=2) + "\n")
    return summary
