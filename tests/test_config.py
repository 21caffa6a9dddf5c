"""Strict config: overrides, loading saved configs, validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from learnability.config import (CompareConfig, ConfigError, RunConfig, apply_overrides, from_dict, save,
                                 super_batch, to_dict, validate)


def test_overrides_set_nested_fields_and_leave_the_default_alone() -> None:
    base = RunConfig()
    cfg = apply_overrides(base, ["--train.steps=7", "--selection.temperature=0.5", "--model.proxy=mlp_tiny",
                                 "--out=runs/x", "--data.label_noise=0"])
    assert cfg.train.steps == 7 and isinstance(cfg.train.steps, int)
    assert cfg.selection.temperature == 0.5
    assert cfg.model.proxy == "mlp_tiny"
    assert cfg.out == "runs/x"
    assert cfg.data.label_noise == 0.0 and isinstance(cfg.data.label_noise, float)
    assert base == RunConfig()  # frozen, replaced not mutated
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 3  # type: ignore[misc]


def test_space_separated_value_form() -> None:
    cfg = apply_overrides(RunConfig(), ["--train.steps", "9", "--data.seed", "-1", "--selection.score=rho"])
    assert cfg.train.steps == 9
    assert cfg.data.seed == -1
    assert cfg.selection.score == "rho"


def test_later_override_wins() -> None:
    assert apply_overrides(RunConfig(), ["--train.steps=1", "--train.steps=2"]).train.steps == 2


@pytest.mark.parametrize("args, key, hint", [
    (["--train.stepz=5"], "train.stepz", "steps"),
    (["--trian.steps=5"], "trian.steps", "train"),
    (["--selection.temprature=2"], "selection.temprature", "temperature"),
    (["--outt=x"], "outt", "out"),
])
def test_unknown_key_names_it_and_suggests(args: list[str], key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as e:
        apply_overrides(RunConfig(), args)
    assert repr(key) in str(e.value)
    assert f"did you mean {hint!r}" in str(e.value)


def test_unknown_key_without_close_match_lists_known_keys() -> None:
    with pytest.raises(ConfigError, match="zzzzzz") as e:
        apply_overrides(RunConfig(), ["--train.zzzzzz=1"])
    assert "steps" in str(e.value)


def test_field_is_not_a_section_and_section_is_not_a_field() -> None:
    with pytest.raises(ConfigError, match="train.steps.x"):
        apply_overrides(RunConfig(), ["--train.steps.x=1"])
    with pytest.raises(ConfigError, match="section"):
        apply_overrides(RunConfig(), ["--train=1"])


@pytest.mark.parametrize("arg, key", [
    ("--train.steps=abc", "train.steps"),
    ("--train.steps=1.5", "train.steps"),
    ("--train.steps=", "train.steps"),
    ("--selection.temperature=hot", "selection.temperature"),
    ("--reference.cache=maybe", "reference.cache"),
    ("--progress=2", "progress"),
    ("--data.reference_size=1e3", "data.reference_size"),
])
def test_wrong_type_names_the_key(arg: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        apply_overrides(RunConfig(), [arg])


@pytest.mark.parametrize("raw, value", [("true", True), ("True", True), ("1", True), ("yes", True),
                                        ("false", False), ("FALSE", False), ("0", False), ("no", False)])
def test_bool_parsing(raw: str, value: bool) -> None:
    assert apply_overrides(RunConfig(), [f"--progress={raw}"]).progress is value
    assert apply_overrides(RunConfig(), [f"--reference.cache={raw}"]).reference.cache is value


def test_malformed_arguments() -> None:
    with pytest.raises(ConfigError, match="missing a value"):
        apply_overrides(RunConfig(), ["--train.steps"])
    with pytest.raises(ConfigError, match="missing a value"):
        apply_overrides(RunConfig(), ["--train.steps", "--train.lr=0.1"])
    with pytest.raises(ConfigError, match="train.steps=5"):
        apply_overrides(RunConfig(), ["train.steps=5"])


def test_tuple_comma_list() -> None:
    cfg = apply_overrides(CompareConfig(), ["--arms=uniform,learnability,rho", "--run.train.steps=3"])
    assert cfg.arms == ("uniform", "learnability", "rho")
    assert cfg.run.train.steps == 3
    assert apply_overrides(CompareConfig(), ["--arms=rho"]).arms == ("rho",)
    assert apply_overrides(CompareConfig(), ["--arms=rho,,uniform,"]).arms == ("rho", "uniform")


def test_from_dict_round_trips_through_json(tmp_path) -> None:
    cfg = apply_overrides(CompareConfig(), ["--arms=uniform,rho", "--run.train.steps=3", "--run.progress=false",
                                            "--run.selection.temperature=0.25"])
    path = tmp_path / "config.json"
    save(cfg, str(path))
    loaded = from_dict(CompareConfig, json.loads(path.read_text()))
    assert loaded == cfg
    assert from_dict(RunConfig, to_dict(RunConfig())) == RunConfig()
    assert from_dict(RunConfig, {}) == RunConfig()


def test_from_dict_is_strict() -> None:
    with pytest.raises(ConfigError, match="'bogus'"):
        from_dict(RunConfig, {"bogus": 1})
    with pytest.raises(ConfigError, match="'train.stepz'.*'steps'"):
        from_dict(RunConfig, {"train": {"stepz": 1}})
    with pytest.raises(ConfigError, match="train: expected a section"):
        from_dict(RunConfig, {"train": 5})
    for section, field, value in [("train", "steps", "abc"), ("train", "steps", 1.5), ("train", "steps", True),
                                  ("train", "lr", "fast"), ("train", "lr", False), ("data", "source", 3),
                                  ("reference", "cache", "maybe"), ("data", "path", None)]:
        with pytest.raises(ConfigError, match=f"{section}.{field}"):
            from_dict(RunConfig, {section: {field: value}})
    # JSON numbers of the right kind are accepted
    cfg = from_dict(RunConfig, {"train": {"steps": 4.0, "lr": 1}})
    assert cfg.train.steps == 4 and isinstance(cfg.train.steps, int)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


def test_validate_accepts_the_defaults() -> None:
    validate(RunConfig())
    validate(apply_overrides(RunConfig(), ["--selection.filter_ratio=0", "--selection.score=uniform",
                                           "--data.reference_size=0"]))


@pytest.mark.parametrize("arg, key", [
    ("--selection.filter_ratio=1.0", "selection.filter_ratio"),
    ("--selection.filter_ratio=-0.1", "selection.filter_ratio"),
    ("--selection.filter_ratio=nan", "selection.filter_ratio"),
    ("--selection.temperature=0", "selection.temperature"),
    ("--selection.temperature=inf", "selection.temperature"),
    ("--train.batch_size=0", "train.batch_size"),
    ("--train.steps=0", "train.steps"),
    ("--train.lr=0", "train.lr"),
    ("--train.device=tpu", "train.device"),
    ("--selection.score=nope", "selection.score"),
    ("--selection.sampler=nope", "selection.sampler"),
    ("--model.learner=resnet9000", "model.learner"),
    ("--model.proxy=resnet9000", "model.proxy"),
    ("--reference.train_on=web", "reference.train_on"),
    ("--data.pool_size=-1", "data.pool_size"),
    ("--selection.start=0", "selection.start"),
    ("--selection.start=5 --selection.end=4", "selection.end"),
    ("--backend=ray --selection.start=5", "selection.start/end"),
    ("--backend=ray --ray.start_timeout_s=0", "ray.start_timeout_s"),
    ("--task=clip --pairs.swapped=0.5 --pairs.duplicates=0.5", "pairs.swapped/uninformative/wrong_attribute/duplicates"),
    ("--task=clip --pairs.duplicates=1", "pairs.duplicates"),
    ("--task=clip --pairs.vocab=bpe", "pairs.vocab"),
    ("--task=clip --selection.score=oracle --selection.sampler=jest", "oracle reads"),
    ("--task=clip --selection.score=oracle --pairs.source=jsonl --pairs.path=x.jsonl", "oracle reads"),
])
def test_validate_rejects(arg: str, key: str) -> None:
    cfg = apply_overrides(RunConfig(), arg.split())
    with pytest.raises(ConfigError, match=key):
        validate(cfg)


def test_validate_names_the_choices_for_unknown_names() -> None:
    with pytest.raises(ConfigError, match="learnability"):
        validate(apply_overrides(RunConfig(), ["--selection.score=nope"]))
    with pytest.raises(ConfigError, match="cnn_tiny"):
        validate(apply_overrides(RunConfig(), ["--model.learner=nope"]))


def test_validate_needs_a_curated_set_for_a_curated_reference() -> None:
    with pytest.raises(ConfigError, match="reference_size"):
        validate(apply_overrides(RunConfig(), ["--data.reference_size=0"]))
    validate(apply_overrides(RunConfig(), ["--data.reference_size=0", "--reference.train_on=pool"]))


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("b, f, expected", [(128, 0.5, 256), (128, 0.0, 128), (100, 0.8, 500), (3, 0.5, 6),
                                            (10, 0.75, 40), (1, 0.01, 1)])
def test_super_batch(b: int, f: float, expected: int) -> None:
    assert super_batch(b, f) == expected
