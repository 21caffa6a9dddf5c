"""docs/api.md against the code: every documented call names the parameters the code takes, in
order, with the same keyword-only marker and the same literal defaults."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "docs" / "api.md"
# written as calls on instances (`bij(i)`, `.lookup(ids)`), not importable names
INSTANCE_NOTATION = {"bij", "bij.inverse", ".lookup", ".positions", ".sorted_ids", "of_unsorted", "of_sorted",
                     "load_state_dict"}


def _split(args: str) -> list[str]:
    """Top-level comma-separated parts of a documented argument list."""
    parts, depth, cur = [], 0, ""
    for ch in args:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [p for p in parts + [cur.strip()] if p]


def documented_calls() -> list[tuple[str, str, str]]:
    """(module context, name, argument text) of each call in the first column of api.md's tables."""
    calls, context = [], "learnability"
    for line in API.read_text().splitlines():
        if m := re.match(r"## `([\w.]+)`", line):
            context = m.group(1)
        if not line.startswith("| `"):
            continue
        cell = line.split(" | ")[0][2:]
        cell_context = context
        for span in re.findall(r"`([^`]*)`", cell):
            if re.fullmatch(r"learnability\.[\w.]+", span):  # `learnability.checkpoint`: the names after it
                cell_context = span
            elif m := re.match(r"([\w.]*?)\((.*)\)", span):
                name, args = m.group(1), m.group(2)
                if name.startswith("learnability."):
                    cell_context, name = name.rsplit(".", 1)
                calls.append((cell_context, name, args))
    return calls


def _resolve(context: str, name: str):
    for module in dict.fromkeys([context, "learnability", "learnability.functional"]):
        obj = importlib.import_module(module)
        try:
            for part in name.split("."):
                obj = getattr(obj, part) if not inspect.ismodule(obj) or hasattr(obj, part) else \
                    importlib.import_module(f"{obj.__name__}.{part}")
            return obj
        except (AttributeError, ModuleNotFoundError):
            continue
    raise AssertionError(f"docs/api.md documents {name}(...) but no {name} is found in {context}")


def _params(obj) -> list[inspect.Parameter]:
    sig = inspect.signature(obj.__init__ if inspect.isclass(obj) and "__init__" in vars(obj) else obj)
    return [p for p in sig.parameters.values() if p.name not in ("self", "cls")]


CALLS = [c for c in documented_calls() if c[1] not in INSTANCE_NOTATION and c[2].strip() != "..."]


def test_the_docs_document_the_selector_and_the_functional_layer():
    names = {name for _, name, _ in CALLS}
    assert {"Selector", "score_losses", "super_batches", "jest_sample"} <= names and len(CALLS) > 40


@pytest.mark.parametrize("context,name,args", CALLS, ids=[f"{c}.{n}" for c, n, _ in CALLS])
def test_documented_signature_matches_the_code(context, name, args):
    if context.startswith("learnability.distributed"):
        pytest.importorskip("ray")
    real = _params(_resolve(context, name))
    doc, keyword_only = [], False
    for part in _split(args):
        if part == "*":
            keyword_only = True
            continue
        m = re.match(r"(\*{0,2})([A-Za-z_]\w*)|\(", part)
        assert m, (name, part)
        default = part.split("=", 1)[1] if "=" in part else None
        doc.append((m.group(2), m.group(1), keyword_only, default))  # group(2) None: a pattern like (x, y)
    assert len(doc) == len(real), f"{name}: documented {[d[0] for d in doc]}, the code takes {[p.name for p in real]}"
    for (dname, stars, kw, default), p in zip(doc, real):
        assert dname is None or dname == p.name, f"{name}: documented {dname!r} where the code has {p.name!r}"
        if stars:
            assert p.kind == (p.VAR_KEYWORD if stars == "**" else p.VAR_POSITIONAL), (name, p.name)
            continue
        assert kw == (p.kind == p.KEYWORD_ONLY), f"{name}: {p.name} keyword-only in the code: {not kw}"
        if default is not None:
            assert p.default is not p.empty, f"{name}: {p.name} has no default in the code"
            try:
                literal = ast.literal_eval(default)
            except (ValueError, SyntaxError):
                assert getattr(p.default, "__name__", None) == default, (name, p.name, default, p.default)
            else:
                assert literal == p.default, f"{name}: {p.name}={default} documented, {p.default!r} in the code"
