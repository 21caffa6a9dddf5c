"""Image-text task: evaluation functions, joint selection through the Selector, and the CLI."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from learnability import analysis
from learnability import config as C
from learnability.cli import main
from learnability.clip_eval import retrieval_recall, zero_shot_accuracy
from learnability.tasks.clip import actor_loss_fn, embedding_rows_fn, pair_loss_fn, train_loss_fn
from learnability.contrastive import clip_loss_per_example_from_rows, joint_loss_matrix_from_rows
from learnability.dual import build_dual
from learnability.flops import cnn_cost, measure_loss_cost
from learnability.reference import ReferenceLosses
from learnability.io import read_jsonl
from learnability.selector import Selector

FMNIST = os.path.isdir("/usr/share/datasets/fashion-mnist")
TINY = ["--task=clip", "--data.pool_size=600", "--data.reference_size=300", "--data.test_size=200",
        "--train.steps=12", "--train.batch_size=32", "--train.eval_every=4", "--pairs.n_chunks=4",
        "--reference.epochs=2", "--progress=false", "--train.threads=1", "--pairs.retrieval_size=100"]


def test_retrieval_and_zero_shot_on_hand_made_embeddings():
    e = torch.eye(4)
    assert retrieval_recall(e, e) == {"r1_i2t": 1.0, "r1_t2i": 1.0, "r5_i2t": 1.0, "r5_t2i": 1.0}
    shifted = e[[1, 2, 3, 0]]  # the true text of image i is orthogonal to it; one other text matches it exactly
    r = retrieval_recall(e, shifted, ks=(1, 2))
    assert r["r1_i2t"] == 0.0 and r["r2_i2t"] == 1.0  # one candidate scores higher; ties do not count against
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    imgs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert zero_shot_accuracy(imgs, classes, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def _pairs_batch(n: int = 16):
    g = torch.Generator().manual_seed(0)
    return torch.rand((n, 3, 8, 8), generator=g) * 2 - 1, torch.randint(1, 20, (n, 6), generator=g)


def test_joint_selection_through_the_selector():
    torch.manual_seed(0)
    proxy, reference = build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6), build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6)
    sel = Selector(score="learnability", batch_size=8, proxy=proxy, reference=reference,
                   proxy_optimizer=torch.optim.AdamW(proxy.parameters()), sampler="jest", n_chunks=4,
                   loss_fn=actor_loss_fn("dot"), train_loss_fn=train_loss_fn("siglip"), pair_loss_fn=pair_loss_fn, seed=0)
    batch = _pairs_batch()
    s = sel.select_index(batch)
    assert s.scores.shape == (16, 16) and len(set(s.index.tolist())) == 8
    assert s.losses["online"].shape == (16, 16) and s.losses["reference"].shape == (16, 16)
    images, tokens = sel.select(batch)
    assert images.shape == (8, 3, 8, 8) and tokens.shape == (8, 6)
    assert sel.train_proxy((images, tokens)) > 0
    # scoring counts both models over the whole super-batch, pairwise terms included
    assert sel.ledger.flops["scoring"] > 2 * 2 * 16 * sel.cost("proxy", batch).forward * 0.5
    with pytest.raises(ValueError, match="n_chunks"):
        Selector(score="learnability", batch_size=8, proxy=proxy, reference=reference,
                 proxy_optimizer=torch.optim.AdamW(proxy.parameters()), sampler="jest", n_chunks=3,
                 pair_loss_fn=pair_loss_fn)
    with pytest.raises(ValueError, match="pair_loss_fn"):
        Selector(score="hard_learner", batch_size=8, proxy=proxy, proxy_optimizer=torch.optim.AdamW(proxy.parameters()),
                 sampler="jest")


def test_jest_with_cached_reference_embeddings_matches_running_the_reference():
    torch.manual_seed(0)
    proxy, reference = build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6), build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6)
    reference.eval()
    batch, ids = _pairs_batch(), torch.arange(100, 116)
    with torch.no_grad():
        reference.logit_scale.fill_(2.0)  # a non-default scale and bias must travel with the cached rows
        reference.logit_bias.fill_(-3.0)
        cache = ReferenceLosses.from_unsorted(ids.flip(0), embedding_rows_fn(reference, batch).flip(0))

    def selector(**kw):
        p = build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6)
        p.load_state_dict(proxy.state_dict())
        return Selector(score="learnability", batch_size=8, proxy=p, proxy_optimizer=torch.optim.AdamW(p.parameters()),
                        sampler="jest", n_chunks=4, loss_fn=actor_loss_fn("dot"), train_loss_fn=train_loss_fn("siglip"),
                        pair_loss_fn=pair_loss_fn, seed=0, **kw)

    live, cached = selector(reference=reference), selector(reference_losses=cache, reference_rows_fn=joint_loss_matrix_from_rows)
    a, b = live.select_index(batch, ids), cached.select_index(batch, ids)
    torch.testing.assert_close(b.losses["reference"], a.losses["reference"], rtol=1e-5, atol=1e-5)
    assert torch.equal(a.index, b.index)
    # FLOPs in closed form: each model that runs costs its two towers on the n pairs plus the [n, D] x [D, n]
    # similarity product (2 n^2 D); the cached reference costs that product alone, the live one its towers too
    d, n = 64, 16
    proxy_towers, reference_towers = (n * measure_loss_cost(m, actor_loss_fn("dot"), batch).forward
                                      for m in (proxy, reference))
    assert reference_towers > 0
    assert cached.ledger.flops["scoring"] == pytest.approx(proxy_towers + 2 * n * n * d + 2 * n * n * d)
    assert live.ledger.flops["scoring"] == pytest.approx(proxy_towers + 2 * n * n * d + reference_towers + 2 * n * n * d)
    # a per-example function must return [B]
    bad = Selector(score="easy_reference", batch_size=8, reference_losses=cache, reference_rows_fn=joint_loss_matrix_from_rows)
    with pytest.raises(ValueError, match="reference_rows_fn must return"):
        bad.select_index(batch, ids)


def test_contrastive_actor_with_cached_reference_embeddings_matches_running_the_reference():
    torch.manual_seed(1)
    reference = build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6).eval()
    batch, ids = _pairs_batch(), torch.arange(16)
    with torch.no_grad():
        cache = ReferenceLosses.from_unsorted(ids, embedding_rows_fn(reference, batch))
    loss = actor_loss_fn("contrastive")
    live = Selector(score="easy_reference", batch_size=8, reference=reference, loss_fn=loss, seed=0)
    cached = Selector(score="easy_reference", batch_size=8, reference_losses=cache, loss_fn=loss, seed=0,
                      reference_rows_fn=clip_loss_per_example_from_rows)
    perm = torch.randperm(16)  # the super-batch in another order: each row still finds its own id
    a = live.select_index((batch[0][perm], batch[1][perm]), ids[perm])
    b = cached.select_index((batch[0][perm], batch[1][perm]), ids[perm])
    torch.testing.assert_close(b.losses["reference"], a.losses["reference"], rtol=1e-5, atol=1e-5)
    assert torch.equal(a.index, b.index)
    # FLOPs: the live reference runs both towers on 16 pairs; the cached one only the 16 x 16 similarity product
    assert cached.ledger.flops["scoring"] == pytest.approx(2 * 16 * 16 * 64)
    assert live.ledger.flops["scoring"] > 10 * cached.ledger.flops["scoring"]


def test_contrastive_scores_of_a_super_batch_beyond_4096_use_all_of_it_live_and_cached():
    # B = 5120 > score_losses' default chunk of 4096: the live reference (and the online proxy) must
    # score against every other pair of the super-batch, as the cached reference's rows do
    torch.manual_seed(3)
    n = 5120
    reference = build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6).eval()
    batch, ids = _pairs_batch(n), torch.arange(n)
    loss = actor_loss_fn("contrastive")
    with torch.no_grad():
        cache = ReferenceLosses.from_unsorted(ids, embedding_rows_fn(reference, batch))
        whole = loss(reference, batch)
    live = Selector(score="easy_reference", batch_size=8, reference=reference, loss_fn=loss, seed=0)
    cached = Selector(score="easy_reference", batch_size=8, reference_losses=cache, loss_fn=loss, seed=0,
                      reference_rows_fn=clip_loss_per_example_from_rows)
    a, b = live.select_index(batch, ids), cached.select_index(batch, ids)
    torch.testing.assert_close(a.losses["reference"], whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.losses["reference"], a.losses["reference"], rtol=1e-5, atol=1e-5)
    assert torch.equal(a.index, b.index)


def test_contrastive_scoring_flops_count_the_super_batch_similarity_matrix():
    torch.manual_seed(2)
    proxy = build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6)
    batch = _pairs_batch()
    sel = Selector(score="hard_learner", batch_size=8, proxy=proxy, proxy_optimizer=torch.optim.AdamW(proxy.parameters()),
                   loss_fn=actor_loss_fn("contrastive"), train_loss_fn=train_loss_fn("siglip"), seed=0)
    sel.select_index(batch)
    towers = measure_loss_cost(proxy, actor_loss_fn("dot"), batch).forward  # the dot product itself is not counted
    assert sel.ledger.flops["scoring"] == pytest.approx(16 * towers + 2 * 16 * 16 * 64)


def test_dual_cnn_tiny_is_a_cheap_proxy_with_closed_form_cost():
    shape = (3, 40, 40)
    learner, proxy = build_dual("dual_cnn_small", shape, 100, 32), build_dual("dual_cnn_tiny", shape, 100, 32)
    batch = (torch.zeros(4, *shape), torch.randint(1, 100, (4, 32)))
    # image tower: the CNN on 20x20 pooled images; the bag-of-words text tower adds one 64x64 linear layer
    full = measure_loss_cost(proxy, actor_loss_fn("dot"), batch).forward
    assert full == pytest.approx(cnn_cost((3, 20, 20), 8, 64).forward + 2 * 64 * 64)
    assert measure_loss_cost(learner, actor_loss_fn("dot"), batch).forward >= 10 * full  # the 10x rule
    # the full-resolution variant: the same CNN on the 40x40 images, no pooling
    fullres = measure_loss_cost(build_dual("dual_cnn_tiny_fullres", shape, 100, 32), actor_loss_fn("dot"), batch).forward
    assert fullres == pytest.approx(cnn_cost(shape, 8, 64).forward + 2 * 64 * 64)


@pytest.mark.skipif(not FMNIST, reason="dataset-fashion-mnist is not installed")
def test_compare_clip_end_to_end(tmp_path):
    out = tmp_path / "clip"
    assert main(["compare", f"--out={out}", "--arms=uniform,activeclip,jest,jest_learner", *TINY]) == 0
    for f in ("report.md", "accuracy_vs_flops.png", "uniform/tokenizer.json", "reference/embeddings.json"):
        assert (out / f).is_file(), f
    rows = {a: read_jsonl(str(out / a / "metrics.jsonl")) for a in ("uniform", "activeclip", "jest", "jest_learner")}
    for arm, r in rows.items():
        evals = analysis.evaluations(r)
        assert len(evals) == 3 and all(0 <= e["zero_shot"] <= 1 and "r5_t2i" in e for e in evals), arm
    # the pool holds 30% swapped captions; uniform draws them at that rate
    assert analysis.corrupted_selected(rows["uniform"]) == pytest.approx(0.3, abs=0.1)
    # by kind: only swapped captions here, so their share is the whole corrupted share, every step
    for r in rows["uniform"]:
        assert r["swapped_selected"] == r["corrupted_selected"]
        assert r["uninformative_selected"] == r["wrong_attribute_selected"] == r["duplicate_selected"] == 0
    # at the same ratio both score the super-batch with the proxy's towers plus one B x B similarity
    # product per model (contrastive per-example losses, or JEST's pairwise matrix): equal FLOPs
    assert rows["jest"][0]["flops_scoring"] == pytest.approx(rows["activeclip"][0]["flops_scoring"])
    assert rows["activeclip"][0]["flops_scoring"] > 0
    # both cache the reference: a one-off pass over the pool, charged once
    assert rows["jest"][0]["flops_reference"] == rows["activeclip"][0]["flops_reference"] > 0
    # what the learner trained on: the pool's share seen so far rises (at most b new pairs a step);
    # a uniform batch of 32 from the ten garment classes is near balanced, never one class
    for arm, r in rows.items():
        seen = [x["distinct_trained"] for x in r]
        assert seen == sorted(seen) and 0 < seen[0] <= 32 / 600 and seen[-1] <= 12 * 32 / 600, arm
        assert all(0.5 < x["class_balance_selected"] <= 1 for x in r), arm
    # uniform draws without replacement within an epoch (12 x 32 < 600): every pair it trains on is new
    assert [x["distinct_trained"] for x in rows["uniform"]] == pytest.approx([32 * k / 600 for k in range(1, 13)])
    # JEST as published: the learner scores its own super-batch (no online proxy to train), so its
    # scoring costs the learner's towers instead of the proxy's (at least 10x the FLOPs)
    sel = json.loads((out / "jest_learner" / "config.json").read_text())["selection"]
    assert (sel["score"], sel["sampler"]) == ("rho", "jest")
    assert rows["jest_learner"][-1]["flops_proxy_train"] == 0 < rows["jest"][-1]["flops_proxy_train"]
    assert rows["jest_learner"][0]["flops_scoring"] > 10 * rows["jest"][0]["flops_scoring"]
    table = {r["arm"]: r for r in json.loads((out / "report.json").read_text())}
    assert set(table) == {"uniform", "activeclip", "jest", "jest_learner"}


def _write_pairs(folder, n: int, bad: bool = False) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    lines = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "text": f"a {['red', 'blue'][i % 2]} thing number {i % 5}"}))
    if bad:
        lines.append(json.dumps({"image": "missing.png"}))
    (folder / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder / "pairs.jsonl")


def test_user_jsonl_pairs_bad_rows_fail_or_are_counted(tmp_path, capsys):
    pool = _write_pairs(tmp_path / "pool", 80, bad=True)
    ref, test = _write_pairs(tmp_path / "ref", 40), _write_pairs(tmp_path / "test", 20)
    args = ["run", "--task=clip", "--pairs.source=jsonl", f"--pairs.path={pool}", f"--pairs.reference_path={ref}",
            f"--pairs.test_path={test}", "--pairs.image_size=8", "--train.steps=4", "--train.batch_size=8",
            "--train.eval_every=2", "--pairs.n_chunks=2", "--reference.epochs=1", "--reference.batch_size=8",
            "--progress=false", "--train.threads=1"]
    assert main([*args, f"--out={tmp_path / 'fail'}"]) == 2
    assert "text" in capsys.readouterr().err  # the row missing its caption is named
    assert main([*args, f"--out={tmp_path / 'skip'}", "--data.skip_bad=true"]) == 0
    rows = read_jsonl(str(tmp_path / "skip" / "metrics.jsonl"))
    assert rows[-1]["skipped_bad_rows"] == 1 and "zero_shot" not in rows[-1] and "r1_i2t" in rows[-1]


@pytest.mark.skipif(not FMNIST, reason="dataset-fashion-mnist is not installed")
def test_dot_actor_loss_caches_per_id_reference_losses(tmp_path):
    out = tmp_path / "dot"
    assert main(["run", f"--out={out}", *TINY, "--pairs.actor_loss=dot", "--selection.score=learnability"]) == 0
    assert (out / "reference" / "losses.json").is_file() and not (out / "reference" / "embeddings.json").exists()
    rows = read_jsonl(str(out / "metrics.jsonl"))
    assert rows[0]["flops_scoring"] > 0 and rows[0]["flops_reference"] > 0


def test_chunk_count_that_does_not_divide_is_refused(tmp_path, capsys):
    assert main(["run", f"--out={tmp_path / 'x'}", *TINY, "--selection.sampler=jest", "--pairs.n_chunks=5"]) == 2
    assert "pairs.n_chunks must divide" in capsys.readouterr().err


def test_build_dual_sets_the_initial_logit_scale_and_bias():
    default = build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6)
    assert default.logit_scale.item() == pytest.approx(math.log(10.0)) and default.logit_bias.item() == -10.0
    m = build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6, init_scale=5.0, init_bias=-4.5)
    assert m.logit_scale.item() == pytest.approx(math.log(5.0)) and m.logit_bias.item() == -4.5
    with pytest.raises(ValueError, match="init_scale"):
        build_dual("dual_mlp_tiny", (3, 8, 8), 20, 6, init_scale=0.0)


@pytest.mark.parametrize("key,value", [("pairs.logit_scale_init", "0"), ("pairs.logit_scale_init", "inf"),
                                       ("pairs.logit_bias_init", "nan")])
def test_config_rejects_bad_logit_inits_naming_the_key(key, value):
    cfg = C.apply_overrides(C.RunConfig(), ["--task=clip", f"--{key}={value}"])
    with pytest.raises(C.ConfigError, match=key.replace(".", r"\.")):
        C.validate(cfg)


def test_attribute_accuracy_reads_each_field_of_the_caption():
    from learnability.clip_eval import attribute_accuracy
    from learnability.pairs.captions import COLOURS, describe

    g = torch.Generator().manual_seed(0)
    n = 60
    attrs = torch.stack([torch.randint(0, k, (n,), generator=g) for k in (10, 6, 2, 4)], 1)[:, None]  # [N, 1, 4]
    style = torch.randint(0, 2**40, (n,), generator=g)
    captions = describe(attrs, style)

    def colour_of(text: str) -> int:  # a text tower that reads only the colour word
        return next(i for i, c in enumerate(COLOURS) if f" {c} " in f" {text} ")

    def encode(texts: list[str]) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.tensor([colour_of(t) for t in texts]), 6).float()

    images = encode(captions)  # an image tower that sees only the colour
    acc = attribute_accuracy(images, attrs, style, encode)
    assert acc["attr_colour"] == 1.0
    # the other fields' variants all share the true colour: ties, resolved to value 0
    assert acc["attr_class"] == pytest.approx(float((attrs[:, 0, 0] == 0).float().mean()))
    assert acc["attr_size"] == pytest.approx(float((attrs[:, 0, 2] == 0).float().mean()))


def test_clean_and_noisy_pools_tokenize_alike(tmp_path):
    """Pools differing only in caption noise give the learner the same vocabulary and token ids."""
    if not FMNIST:
        pytest.skip("dataset-fashion-mnist is not installed")
    vocabs = []
    for noise in ("--pairs.swapped=0", "--pairs.swapped=0.3"):
        out = tmp_path / noise[-1]
        assert main(["run", f"--out={out}", *TINY, noise, "--train.steps=1", "--selection.score=uniform"]) == 0
        vocabs.append(json.loads((out / "tokenizer.json").read_text())["vocab"])
    assert vocabs[0] == vocabs[1]


def test_selection_window_scores_and_trains_the_proxy_only_where_asked(tmp_path):
    """selection.start/end: before the window the proxy trains but nothing is scored; after it,
    neither; every step draws B and trains the learner on b."""
    from learnability.data import build_data
    from learnability.loop import run

    cfg = C.apply_overrides(C.RunConfig(), ["--data.source=digits", "--data.reference_size=300", "--train.steps=8",
                                           "--train.batch_size=16", "--train.eval_every=4", "--progress=false",
                                           "--reference.epochs=1", "--selection.start=3", "--selection.end=5",
                                           f"--out={tmp_path}"])
    run(cfg, build_data(cfg.data))
    rows = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows if "loss_online_candidates" in r] == [3, 4, 5]
    assert [r["step"] for r in rows if "loss_proxy" in r] == [1, 2, 3, 4, 5]
    assert [r["candidates_drawn"] for r in rows] == [32 * s for s in range(1, 9)]
    assert rows[2]["flops_scoring"] > rows[1]["flops_scoring"] == 0 and rows[-1]["flops_scoring"] == rows[4]["flops_scoring"]
    with pytest.raises(C.ConfigError, match="selection.end"):
        C.validate(C.apply_overrides(cfg, ["--selection.end=2"]))
    with pytest.raises(C.ConfigError, match="selection.start"):
        C.validate(C.apply_overrides(cfg, ["--selection.start=0"]))


def test_a_fixed_logit_scale_stays_at_its_initial_value():
    model = build_dual("dual_cnn_tiny", (3, 16, 16), 20, 6, init_scale=10.0, learn_scale=False)
    opt = torch.optim.AdamW([p for p in model.parameters()], lr=0.1)
    out = model(torch.randn(4, 3, 16, 16), torch.randint(1, 20, (4, 6)))
    (out["image"] @ out["text"].T * out["logit_scale"].exp() + out["logit_bias"]).sum().backward()
    opt.step()
    assert model.logit_scale.item() == pytest.approx(math.log(10.0))
    assert model.logit_bias.grad is not None  # the bias still learns
