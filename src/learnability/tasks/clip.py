"""Image-text pairs (task=clip): ActiveCLIP and JEST with dual encoders.

Data: `pairs.build.build_pairs` (built-in compositional pairs, or a user's jsonl / shards) and a
word tokenizer (the grammar's words for built-in pairs, so clean and noisy pools tokenize alike;
else the training captions'; saved as `tokenizer.json`). The learner trains on the SigLIP (or
CLIP) loss of the selected pairs; the proxies score per pair with minus the image-text dot product
(cacheable per id) or each pair's contrastive loss within the super-batch, or, for joint selection
(JEST), the `[B, B]` matrix of SigLIP pair losses; batch-dependent reference losses are rebuilt
from the reference's cached per-id embeddings. Evaluation: zero-shot accuracy on the clean test
split (`test_accuracy`; mean Recall@1 for unlabelled pairs), retrieval Recall@1/5 on held-out
pairs, and per-attribute zero-shot accuracy at the last evaluation.
"""

from __future__ import annotations

import functools
import hashlib
import os

import torch
from torch import nn

from learnability import config as C
from learnability.batch import Batch
from learnability.clip_eval import attribute_accuracy, embed, embed_text, retrieval_recall, zero_shot_accuracy
from learnability.contrastive import (clip_loss, clip_loss_per_example, clip_loss_per_example_from_rows, dot_product_loss,
                                      embedding_rows, joint_loss_matrix, joint_loss_matrix_from_rows, siglip_loss)
from learnability.dual import build_dual
from learnability.flops import Ledger, ModelCost, measure_loss_cost
from learnability.pairs import CLEAN, DUPLICATE, KIND_NAMES, SWAPPED, UNINFORMATIVE, WRONG_ATTRIBUTE, class_prompts
from learnability.pairs.build import build_pairs
from learnability.pairs.noise import synthetic_vocabulary
from learnability.pairs.pairset import PairSplits
from learnability.pairs.tokenizer import WordTokenizer
from learnability.reference import ReferenceLosses, fit, load_or_train_reference
from learnability.selection import is_joint
from learnability.tasks import ScoringPart, class_balance, oracle_options, register_task


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


# How damaged each noise kind leaves a pair, for the graded oracle: a duplicate's caption is true
# (redundant), a wrong attribute leaves three of four true, junk says nothing, a swap says false things.
NOISE_GRADES = {DUPLICATE: 0.25, WRONG_ATTRIBUTE: 0.5, UNINFORMATIVE: 0.75, SWAPPED: 1.0}


@register_task("clip")
class ClipTask:
    """See `tasks.Task`; `data` is `(PairSplits, bad rows skipped)` (built by `build_pairs` when None)."""

    @staticmethod
    def load(cfg: C.RunConfig) -> tuple[PairSplits, int]:
        return build_pairs(cfg)

    def __init__(self, cfg: C.RunConfig, data: tuple[PairSplits, int] | None, device: torch.device, autocast: bool):
        p = cfg.pairs
        self.cfg, self.device, self.autocast = cfg, device, autocast
        self.splits, self.skipped = data if data is not None else self.load(cfg)
        pool, ref_set, test = self.splits.pool, self.splits.reference, self.splits.test
        self.tokenizer = (WordTokenizer(synthetic_vocabulary(pool.class_names), p.max_len) if p.source == "synthetic" and p.vocab == "auto"
                          else WordTokenizer.build(pool.captions + ref_set.captions, max_len=p.max_len))
        self.tokenizer.save(os.path.join(cfg.out, "tokenizer.json"))
        self.tokens, self.ref_tokens = self.tokenizer.encode(pool.captions), self.tokenizer.encode(ref_set.captions)
        self.pool, self.pool_size, self.pool_ids, self.reference_size = pool, len(pool), pool.ids, len(ref_set)
        self.shape = tuple(pool.images.shape[1:])
        self.train_fn, self.actor_fn = train_loss_fn(p.loss), actor_loss_fn(p.actor_loss)
        self.joint = is_joint(cfg.selection.sampler)
        self.by_rows = self.joint or p.actor_loss != "dot"  # batch-dependent losses: cache per-id embeddings
        # Evaluation: class prompts for zero-shot, the first `retrieval_size` clean test pairs for retrieval.
        self.prompts = (self.tokenizer.encode(class_prompts(test.class_names))
                        if test.labels is not None and test.class_names else None)
        self.test_tokens = self.tokenizer.encode(test.captions)
        self.n_ret = min(p.retrieval_size, len(test))

    def build_model(self, role: str) -> nn.Module:
        return self._builder(role)()

    def _builder(self, role: str):
        p = self.cfg.pairs
        return functools.partial(build_dual, p.learner if role == "learner" else p.proxy, self.shape,
                                 self.tokenizer.vocab_size, p.max_len, init_scale=p.logit_scale_init,
                                 init_bias=p.logit_bias_init, learn_scale=p.learn_scale)

    def learner_cost(self, learner: nn.Module) -> ModelCost:
        b = self.cfg.train.batch_size
        return measure_loss_cost(learner, self.train_fn, (self.pool.images[:b], self.tokens[:b]))

    def prepare_reference(self, model: nn.Module, ledger: Ledger) -> ReferenceLosses | None:
        """Trained on the curated pairs with the seed + 2; its cache holds per-id losses (`dot`) or,
        for losses that depend on the super-batch, per-id embedding rows."""
        cfg, p, r, seed = self.cfg, self.cfg.pairs, self.cfg.reference, self.cfg.train.seed + 2
        ref_set = self.splits.reference
        vocab_fp = hashlib.sha256("\n".join(self.tokenizer.vocab).encode()).hexdigest()
        want = {"train_fingerprint": ref_set.fingerprint(), "vocab": vocab_fp, "epochs": r.epochs,
                "batch_size": r.batch_size, "lr": r.lr, "seed": seed, "architecture": p.proxy, "loss": p.loss,
                "init_scale": p.logit_scale_init, "init_bias": p.logit_bias_init, "input_shape": list(self.shape),
                "max_len": p.max_len}
        ref = load_or_train_reference(
            model, measure_loss_cost(model, self.train_fn, (ref_set.images[:r.batch_size], self.ref_tokens[:r.batch_size])),
            ref_dir=r.dir or os.path.join(cfg.out, "reference"), trained_with=want, device=self.device,
            train=lambda m: train_pairs(m, ref_set.images, self.ref_tokens, epochs=r.epochs, batch_size=r.batch_size,
                                        lr=r.lr, seed=seed, loss_fn=self.train_fn, device=self.device,
                                        progress=cfg.progress),
            cache_batch=(self.pool.images, self.tokens) if r.cache else None, cache_ids=self.pool.ids,
            cache_fingerprint=self.pool.fingerprint() + vocab_fp,
            loss_fn=embedding_rows_fn if self.by_rows else self.actor_fn,
            cache_name="embeddings" if self.by_rows else "losses", per_example=not self.by_rows)
        ledger.add("reference", flops=ref.one_off_flops, seconds=ref.one_off_seconds)
        return ref.losses

    def selector_options(self, cached: bool) -> dict:
        rows_fn = joint_loss_matrix_from_rows if self.joint else clip_loss_per_example_from_rows
        return {"loss_fn": self.actor_fn, "train_loss_fn": self.train_fn, "pair_loss_fn": pair_loss_fn,
                "n_chunks": self.cfg.pairs.n_chunks, "reference_rows_fn": rows_fn if self.by_rows and cached else None,
                **oracle_options(self.cfg, self.pool.ids, self.pool.corruption, NOISE_GRADES)}

    def scoring_part(self, cached: bool) -> ScoringPart:
        return ScoringPart(self.pool.ids, (self.pool.images, self.tokens), self._builder("proxy"),
                           self.selector_options(cached))

    def draw(self, pos: torch.Tensor, split: str = "pool") -> Batch:
        images, tokens = (self.pool.images, self.tokens) if split == "pool" else (self.splits.reference.images, self.ref_tokens)
        return images[pos].to(self.device), tokens[pos].to(self.device)

    def train_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.train_fn(model, batch)

    def reference_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.train_fn(model, batch)

    def selected(self, pos: torch.Tensor) -> dict[str, float]:
        code = self.pool.corruption[pos]
        row = {"corrupted_selected": float((code != CLEAN).float().mean()),
               **{f"{KIND_NAMES[k]}_selected": float((code == k).float().mean()) for k in KIND_NAMES if k != CLEAN},
               "skipped_bad_rows": self.skipped}
        if self.pool.labels is not None and len(self.pool.class_names or ()) > 1:
            row["class_balance_selected"] = class_balance(self.pool.labels[pos], len(self.pool.class_names))
        return row

    def evaluate(self, model: nn.Module, final: bool) -> dict[str, float]:
        """Retrieval Recall@1/5, zero-shot accuracy (`test_accuracy`; else mean Recall@1) and, at the
        last evaluation of built-in pairs, zero-shot accuracy per caption attribute."""
        t, test, n = self.cfg.train, self.splits.test, self.n_ret
        img, txt = embed(model, test.images, self.test_tokens, t.eval_batch_size, self.device, self.autocast)
        row = retrieval_recall(img[:n], txt[:n])
        if self.prompts is not None:
            _, class_txt = embed(model, test.images[:len(self.prompts)], self.prompts, t.eval_batch_size, self.device,
                                 self.autocast)
            row["zero_shot"] = row["test_accuracy"] = zero_shot_accuracy(img, class_txt, test.labels)
        else:
            row["test_accuracy"] = (row["r1_i2t"] + row["r1_t2i"]) / 2
        if final and test.attributes is not None and test.style is not None:
            row.update(attribute_accuracy(img[:n], test.attributes, test.style, lambda texts: embed_text(
                model, self.tokenizer.encode(texts), t.eval_batch_size, self.device, self.autocast), test.class_names))
        if final:
            row.update(self._fit(model))
        return row

    def _fit(self, model: nn.Module) -> dict[str, float]:
        """At the last evaluation: the model's logit scale and bias, and (labelled pairs) zero-shot
        accuracy on the first `n_ret` pool images by their true labels: the train side of the
        train/test gap (`zero_shot` is the test side)."""
        scale, bias = getattr(model, "logit_scale", None), getattr(model, "logit_bias", None)
        row = ({"logit_scale": float(scale.detach().exp()), "logit_bias": float(bias.detach())}
               if scale is not None and bias is not None else {})
        pool = self.pool
        if self.prompts is not None and pool.labels is not None:
            t, n = self.cfg.train, min(self.n_ret, len(pool))
            img, _ = embed(model, pool.images[:n], self.prompts[:1].expand(n, -1), t.eval_batch_size, self.device, self.autocast)
            _, class_txt = embed(model, pool.images[:len(self.prompts)], self.prompts, t.eval_batch_size, self.device,
                                 self.autocast)
            row["train_zero_shot"] = zero_shot_accuracy(img, class_txt, pool.labels[:n])
        return row

    def summary(self, selector, learner_cost: ModelCost, ema_flops: float, b: int, big_b: int) -> dict:
        return {"skipped_bad_rows": self.skipped, "pool_corrupted": float((self.pool.corruption != CLEAN).float().mean())}

