"""Config fuzz tests (hypothesis): mistyped keys and wrong-typed values always give a `ConfigError`
whose message names the key, through `apply_overrides` (the command line), `from_dict` (a saved
config.json) and `validate` (values no type can rule out); the CLI maps them to exit status 2.

The keys are enumerated from the dataclasses, so a new section or field is fuzzed without editing
this file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import typing

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from learnability.cli import main
from learnability.config import CompareConfig, ConfigError, RunConfig, apply_overrides, from_dict, validate


def _leaves(cls: type, prefix: str = "") -> dict[str, typing.Any]:
    """Dotted leaf keys of a config class and their types."""
    out: dict[str, typing.Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            out.update(_leaves(typ, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = typ
    return out


def _sections(cls: type, prefix: str = "") -> set[str]:
    out: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.add(prefix + f.name)
            out |= _sections(hints[f.name], f"{prefix}{f.name}.")
    return out


CONFIGS = {"run": RunConfig, "compare": CompareConfig}
LEAVES = {name: _leaves(cls) for name, cls in CONFIGS.items()}
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_.-"


def _parses(fn: typing.Callable, s: str) -> bool:
    try:
        fn(s)
    except (ValueError, OverflowError):
        return False
    return True


@st.composite
def mistyped_keys(draw, which: str) -> str:
    """A real key with 1-3 random edits (insert, delete, replace, swap), never another real key."""
    key = list(draw(st.sampled_from(sorted(LEAVES[which]))))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "swap"]))
        i = draw(st.integers(0, max(len(key) - 1, 0)))
        c = draw(st.sampled_from(ALPHABET))
        if op == "insert":
            key.insert(i, c)
        elif op == "delete" and len(key) > 1:
            del key[i]
        elif op == "replace" and key:
            key[i] = c
        elif op == "swap" and i + 1 < len(key):
            key[i], key[i + 1] = key[i + 1], key[i]
    edited = "".join(key)
    assume(edited and edited not in LEAVES[which])
    return edited


def _message(which: str, args: list[str]) -> str:
    with pytest.raises(ConfigError) as e:
        apply_overrides(CONFIGS[which](), args)
    return str(e.value)


# --- mistyped keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("which", sorted(CONFIGS))
@given(data=st.data(), value=st.text(ALPHABET, max_size=8), spaced=st.booleans())
def test_mistyped_override_key_is_a_config_error_naming_it(which: str, data, value: str, spaced: bool) -> None:
    key = data.draw(mistyped_keys(which), label="key")
    args = [f"--{key}", value or "x"] if spaced else [f"--{key}={value}"]
    assert key in _message(which, args)


@pytest.mark.parametrize("which", sorted(CONFIGS))
@given(data=st.data(), value=st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()))
def test_mistyped_key_in_a_saved_config_is_a_config_error_naming_it(which: str, data, value) -> None:
    key = data.draw(mistyped_keys(which), label="key")
    parts = key.split(".")
    assume(all(parts))  # from_dict nests on dots; an empty part is not a key a JSON file can hold
    nested: typing.Any = value
    for p in reversed(parts):
        nested = {p: nested}
    with pytest.raises(ConfigError) as e:
        from_dict(CONFIGS[which], nested)
    msg = str(e.value)
    # the message names the key down to the first part that is wrong
    known = LEAVES[which].keys() | _sections(CONFIGS[which])
    wrong = next((i for i in range(1, len(parts) + 1) if ".".join(parts[:i]) not in known), len(parts))
    named = ".".join(parts[:wrong])
    if ".".join(parts[:wrong - 1]) in LEAVES[which]:  # a value nested under a leaf: the leaf is named
        named = ".".join(parts[:wrong - 1])
    assert named in msg, (nested, msg)


# --- wrong-typed values ---------------------------------------------------------------------------

BOOL_WORDS = {"true", "1", "yes", "false", "0", "no"}


def _bad_text(typ: typing.Any) -> st.SearchStrategy[str] | None:
    """Command-line strings that are not a value of `typ`; None when every string is one."""
    if typ is int:
        return st.one_of(st.text(max_size=10), st.sampled_from(["1.5", "1e3", "", "true", "nan", "0x10", "--1"])).filter(
            lambda s: not _parses(int, s))
    if typ is float:
        return st.one_of(st.text(max_size=10), st.sampled_from(["", "1,5", "fast", "1e", "0x10"])).filter(
            lambda s: not _parses(float, s))
    if typ is bool:
        return st.one_of(st.text(max_size=6), st.sampled_from(["2", "-1", "on", "off", "", "t"])).filter(
            lambda s: s.lower() not in BOOL_WORDS)
    return None


def _bad_json(typ: typing.Any) -> st.SearchStrategy:
    """Values (as a loaded JSON file or a Python dict may hold) that are not a value of `typ`."""
    containers = st.one_of(st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
    if typ is int:
        return st.one_of(st.none(), st.booleans(), containers,
                         st.floats().filter(lambda f: not f.is_integer()), _bad_text(int))
    if typ is float:
        return st.one_of(st.none(), st.booleans(), containers, st.integers(min_value=10 ** 309), _bad_text(float))
    if typ is bool:
        return st.one_of(st.none(), containers, st.floats(), st.integers().filter(lambda i: i not in (0, 1)),
                         _bad_text(bool))
    if typ is str:
        return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), containers)
    if typing.get_origin(typ) is tuple:
        return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                         st.dictionaries(st.text(max_size=2), st.integers(), min_size=1, max_size=2),
                         st.lists(st.integers(), min_size=1, max_size=3))
    return st.nothing()


TYPED = {which: sorted(k for k, t in leaves.items() if _bad_text(t) is not None) for which, leaves in LEAVES.items()}


@pytest.mark.parametrize("which", sorted(CONFIGS))
@given(data=st.data())
def test_wrong_typed_override_value_is_a_config_error_naming_the_key(which: str, data) -> None:
    key = data.draw(st.sampled_from(TYPED[which]), label="key")
    raw = data.draw(_bad_text(LEAVES[which][key]), label="value")
    msg = _message(which, [f"--{key}={raw}"])
    assert key in msg and "expected" in msg, msg


@pytest.mark.parametrize("which", sorted(CONFIGS))
@given(data=st.data())
def test_wrong_typed_saved_value_is_a_config_error_naming_the_key(which: str, data) -> None:
    key = data.draw(st.sampled_from(sorted(LEAVES[which])), label="key")
    value = data.draw(_bad_json(LEAVES[which][key]), label="value")
    nested: typing.Any = value
    for p in reversed(key.split(".")):
        nested = {p: nested}
    with pytest.raises(ConfigError) as e:
        from_dict(CONFIGS[which], nested)
    assert key in str(e.value), (nested, str(e.value))


@given(section=st.sampled_from(sorted(_sections(RunConfig))),
       value=st.one_of(st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2), st.none()))
def test_a_value_where_a_section_belongs_names_the_section(section: str, value) -> None:
    assert section in _message("run", [f"--{section}=1"])
    with pytest.raises(ConfigError, match=section):
        from_dict(RunConfig, {section: value})


@pytest.mark.parametrize("bad", [[], 5, "train.steps=3", None, ["--train.steps=1"]])
def test_a_saved_config_that_is_not_a_mapping_is_a_config_error(bad) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        from_dict(RunConfig, bad)


# --- values no type rules out: validate names the key or accepts -----------------------------------

NUMERIC = sorted(k for k, t in LEAVES["run"].items() if t in (int, float))
CHOICES = ["data.source", "selection.score", "selection.sampler", "model.learner", "model.proxy",
           "reference.train_on", "train.device"]
CLIP_CHOICES = ["pairs.source", "pairs.learner", "pairs.proxy", "pairs.loss", "pairs.actor_loss"]
odd_numbers = st.one_of(st.integers(-10 ** 6, 10 ** 6), st.sampled_from([0, -1, 1, 2 ** 63]),
                        st.floats(), st.sampled_from([0.0, -0.0, 1.0, math.nan, math.inf, -math.inf, 1e-300]))


@pytest.mark.parametrize("task", ["classify", "clip"])
@given(data=st.data())
def test_validate_accepts_or_names_the_key(task: str, data) -> None:
    """Any number in any numeric field, any text in a field with named choices: `validate` accepts
    it or raises a ConfigError naming that field; never another exception."""
    if data.draw(st.booleans(), label="numeric"):
        key = data.draw(st.sampled_from(NUMERIC), label="key")
        value = data.draw(odd_numbers, label="value")
        if LEAVES["run"][key] is int:
            assume(not isinstance(value, float) or value.is_integer())
            value = int(value) if math.isfinite(value) else 0
    else:
        key = data.draw(st.sampled_from(CHOICES + (CLIP_CHOICES if task == "clip" else [])), label="key")
        value = data.draw(st.text(max_size=12), label="value")
    cfg = from_dict(RunConfig, _nest(key, value) | {"task": task})
    try:
        validate(cfg)
    except ConfigError as e:
        assert key in str(e), (key, value, str(e))


def _nest(key: str, value: typing.Any) -> dict:
    section, _, field = key.rpartition(".")
    return {section: {field: value}} if section else {field: value}


@pytest.mark.parametrize("key, value", [
    ("train.lr", math.inf), ("train.lr", math.nan), ("train.weight_decay", -0.1), ("train.label_smoothing", 1.0),
    ("train.threads", -1), ("selection.proxy_lr", 0.0), ("reference.lr", math.nan), ("reference.epochs", 0),
    ("reference.batch_size", 0), ("data.label_noise", 1.0), ("data.junk", -0.1), ("data.duplicates", math.nan),
    ("data.test_fraction", 0.0), ("data.channels", 2), ("data.image_size", 0), ("data.num_classes", -1),
    ("data.test_size", -1), ("data.reference_size", -5), ("data.source", "imagenet"),
])
def test_validate_rejects_impossible_values_naming_the_key(key: str, value) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(from_dict(RunConfig, _nest(key, value)))


@pytest.mark.parametrize("key, value", [
    ("pairs.swapped", 1.0), ("pairs.two_objects", 1.5), ("pairs.retrieval_size", 0), ("pairs.image_size", 0),
    ("pairs.n_chunks", 0), ("pairs.loss", "hinge"),
])
def test_validate_rejects_impossible_clip_values_naming_the_key(key: str, value) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(from_dict(RunConfig, _nest(key, value) | {"task": "clip"}))


# --- the CLI: exit 2, the key on stderr ------------------------------------------------------------


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


@settings(max_examples=15)
@given(data=st.data(), command=st.sampled_from(["run", "compare"]))
def test_cli_exits_2_naming_a_mistyped_key(data, command: str) -> None:
    key = data.draw(mistyped_keys("run"), label="key")
    # --train.steps=0 after it: should the key ever be valid, validation stops the run before training
    code, err = _cli([command, f"--{key}=1", "--train.steps=0"])
    assert code == 2 and key in err, (code, err)


@settings(max_examples=15)
@given(data=st.data(), command=st.sampled_from(["run", "compare"]))
def test_cli_exits_2_naming_a_wrong_typed_value(data, command: str) -> None:
    key = data.draw(st.sampled_from(TYPED["run"]), label="key")
    raw = data.draw(_bad_text(LEAVES["run"][key]), label="value")
    code, err = _cli([command, f"--{key}={raw}", "--train.steps=0"])
    assert code == 2 and key in err, (code, err)


@pytest.mark.parametrize("args, key", [
    (["--train.lr=nan"], "train.lr"), (["--data.channels=2"], "data.channels"),
    (["--data.source=imagenet"], "data.source"), (["--selection.temperature=0"], "selection.temperature"),
])
def test_cli_exits_2_on_impossible_values_before_loading_data(args: list[str], key: str) -> None:
    code, err = _cli(["run", *args, "--data.path=/nonexistent-dir"])
    assert code == 2 and key in err, (code, err)

