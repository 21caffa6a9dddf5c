"""Caption vocabularies, templates and a counter-based hash for per-id seeded choices.

Attribute values are indices into the class names of the source (`OBJECT_WORDS`: Fashion-MNIST's
garments, `CLASS_NAMES`, or scikit-learn's digits), `COLOURS`, `SIZES` and `POSITIONS`; each value has
a few synonyms. A caption is fully determined by the attributes of its objects and one int64
style code per example (the template and synonym choices), so the same example can be re-described
with one attribute changed and nothing else (a hard negative).
"""

from __future__ import annotations

import re

import numpy as np
import torch

CLASS_NAMES = ("t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
CLASS_SYNONYMS = (
    ("t-shirt", "tee", "tee shirt"), ("trousers", "pants", "slacks"), ("pullover", "sweater", "jumper"),
    ("dress", "gown", "frock"), ("coat", "jacket", "overcoat"), ("sandal", "strappy sandal"),
    ("shirt", "collared shirt", "blouse"), ("sneaker", "trainer", "running shoe"), ("bag", "handbag", "purse"),
    ("ankle boot", "boot", "bootie"),
)
DIGIT_SYNONYMS = tuple((w, f"digit {w}", f"number {w}") for w in
                       ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))
# the built-in pair sources (`data.source` with pairs.source=synthetic): the synonyms of each class, first the name
OBJECT_WORDS = {"fashion_mnist": CLASS_SYNONYMS, "digits": DIGIT_SYNONYMS}
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
COLOUR_RGB = ((1.0, 0.1, 0.1), (0.1, 0.9, 0.2), (0.2, 0.35, 1.0), (1.0, 0.95, 0.1), (0.7, 0.2, 1.0), (1.0, 0.55, 0.0))
SIZES = ("small", "large")
SIZE_SYNONYMS = (("small", "little", "tiny"), ("large", "big"))
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
POSITION_SYNONYMS = (("top left", "upper left"), ("top right", "upper right"),
                     ("bottom left", "lower left"), ("bottom right", "lower right"))
FIELD_SIZES = (len(CLASS_NAMES), len(COLOURS), len(SIZES), len(POSITIONS))

# {a}: article, {s}: size, {c}: colour, {k}: class, {p}: position; {o}: the object phrases joined.
OBJECT_TEMPLATES = ("{a} {s} {c} {k} in the {p}", "{a} {s} {c} {k} at the {p}", "{a} {s} {c} {k}, {p}",
                    "{a} {c} {k}, {s}, {p}", "{a} {s} {c} {k} in the {p} corner", "{a} {s} {c} {k} ({p})")
CAPTION_TEMPLATES = ("{o}", "a photo of {o}", "photo of {o}", "an image showing {o}", "{o}.")
JOINERS = (" and ", " with ", "; ")
_SLOTS_PER_OBJECT = 5  # object template, class, colour, size, position synonyms
_M64 = (1 << 64) - 1
_ARTICLE = re.compile(r"\ba (?=[aeiou])")


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, elementwise: `[N]` uint64 -> `[N]` uint64, well mixed."""
    z = np.atleast_1d(np.asarray(x, dtype=np.uint64)) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def id_hash(seed: int, ids: np.ndarray | torch.Tensor, stream: int) -> np.ndarray:
    """`[N]` uint64 hashes of (seed, stream, id): the same id always gets the same value, whatever
    else is in the set, so per-id draws survive subsetting and reordering."""
    ids = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    key = mix64(mix64(np.full(1, seed & _M64, dtype=np.uint64)) ^ np.uint64(stream & _M64))
    return mix64(ids ^ key)


def id_uniform(seed: int, ids: np.ndarray | torch.Tensor, stream: int) -> np.ndarray:
    """`[N]` float64 in [0, 1), a deterministic function of (seed, stream, id)."""
    return (id_hash(seed, ids, stream) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def article(text: str) -> str:
    """Fix 'a' before a vowel: 'a orange bag' -> 'an orange bag'."""
    return _ARTICLE.sub("an ", text)


def class_synonyms(class_names: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], ...]:
    """The caption synonyms of a built-in source whose classes are `class_names` (all of its
    classes or its first ones): the class names identify the grammar a pair set was rendered with."""
    names = tuple(class_names)
    for synonyms in OBJECT_WORDS.values():
        if names and tuple(s[0] for s in synonyms[:len(names)]) == names:
            return synonyms
    raise ValueError(f"no built-in caption grammar has the classes {names}; built-in sources: {', '.join(OBJECT_WORDS)}")


def describe(attributes: torch.Tensor, style: torch.Tensor,
             synonyms: tuple[tuple[str, ...], ...] = CLASS_SYNONYMS) -> list[str]:
    """Captions for `attributes` `[N, O, 4]` (class, colour, size, position per object slot; -1
    rows for absent objects) under `style` `[N]` int64 codes, naming class k by `synonyms[k]`
    (default Fashion-MNIST's garments). Deterministic."""
    if attributes.dim() != 3 or attributes.shape[2] != 4 or style.shape != attributes.shape[:1]:
        raise ValueError(f"describe needs attributes [N, O, 4] and style [N]; got {tuple(attributes.shape)} and {tuple(style.shape)}")
    n, o = attributes.shape[:2]
    slots = 2 + _SLOTS_PER_OBJECT * o
    base = style.numpy().astype(np.uint64)[:, None] + np.arange(1, slots + 1, dtype=np.uint64)[None] * np.uint64(0x632BE59BD9B4E019)
    picks = (mix64(base.reshape(-1)) >> np.uint64(11)).reshape(n, slots).tolist()
    attrs = attributes.tolist()
    out = []
    for row, p in zip(attrs, picks):
        phrases = []
        for j, (k, c, s, q) in enumerate(row):
            if k < 0:
                continue
            b = 2 + _SLOTS_PER_OBJECT * j
            t = OBJECT_TEMPLATES[p[b] % len(OBJECT_TEMPLATES)]
            phrases.append(t.format(a="a", k=synonyms[k][p[b + 1] % len(synonyms[k])], c=COLOURS[c],
                                    s=SIZE_SYNONYMS[s][p[b + 3] % len(SIZE_SYNONYMS[s])],
                                    p=POSITION_SYNONYMS[q][p[b + 4] % len(POSITION_SYNONYMS[q])]))
        joined = JOINERS[p[1] % len(JOINERS)].join(phrases)
        out.append(article(CAPTION_TEMPLATES[p[0] % len(CAPTION_TEMPLATES)].format(o=joined)))
    return out


def grammar_words(synonyms: tuple[tuple[str, ...], ...] = CLASS_SYNONYMS) -> list[str]:
    """Every word (as `tokenizer.split_words` splits text) that a built-in caption, a hard negative
    or a zero-shot prompt can hold with class words `synonyms`, sorted: a vocabulary that does not
    depend on which captions a pool happens to hold, so pools that differ only in their caption
    noise tokenize alike."""
    from learnability.pairs.tokenizer import split_words

    texts = [*OBJECT_TEMPLATES, *CAPTION_TEMPLATES, *JOINERS, "an", *COLOURS,
             *(w for group in (*synonyms, *SIZE_SYNONYMS, *POSITION_SYNONYMS) for w in group)]
    words = {w for t in texts for w in split_words(re.sub(r"\{\w\}", " ", t))}
    return sorted(words)


def class_prompts(class_names: tuple[str, ...] | list[str] = CLASS_NAMES, template: str = "a photo of a {}") -> list[str]:
    """One zero-shot prompt per class, e.g. 'a photo of a sneaker', 'a photo of an ankle boot'."""
    if "{}" not in template:
        raise ValueError(f"the prompt template must hold '{{}}' where the class name goes; got {template!r}")
    return [article(template.format(name)) for name in class_names]
