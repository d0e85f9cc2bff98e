"""Concepts, not label strings: what a user types ("flowers", "a puppy", "vehicle", "flowr", "lake")
resolved to a WordNet concept and the model classes below it, and the nameable concepts above a class (what
a summary climbs to). Pure lookup over `WordNet`; scores are the caller's (a concept's score is
the probability summed over its classes).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from agent.concepts.wordnet import WordNet, norm

# Everyday words WordNet sends elsewhere: "bike" is first a motorcycle there, and ImageNet's only
# motorbike-like class is the moped; people who say bike mean a bicycle far more often.
ALIASES = {"bike": "bicycle", "push bike": "bicycle", "cycle": "bicycle", "kitty": "cat", "kitten": "cat",
           "pup": "dog", "doggy": "dog", "doggie": "dog", "auto": "car", "plant": "flower"}  # fmt: skip
# Synsets too vague to name in an answer ("I saw an artifact"), by their first lemma; a rule or question may
# still ask for them.
VAGUE = frozenset(
    """
entity;physical entity;object;whole;living thing;organism;causal agent;artifact;instrumentality;device;
container;structure;covering;commodity;matter;substance;material;equipment;implement;chordate;vertebrate;
placental;conveyance;abstraction;part;thing;unit;article;creation;product;system;mechanism;solid;
invertebrate;arthropod;consumer goods;durables;protective covering;surface;opening;restraint;
support;decoration;representation;geological formation;natural object;location;region;point;
artefact;worker;person;adult;nutriment;
""".replace("\n", "").split(";")
) - {""}
BROADER_MAX_CLASSES = 40  # a word with no class below it borrows its hypernym's only if that is this narrow
SPELLING_CUTOFF = 0.8  # difflib ratio a misspelt word needs to its nearest known word
RELATED_MAX_CLASSES = 3  # "water" names a water bottle, a water tower, a water snake...: not a concept


@dataclass(frozen=True)
class ModelClass:
    """One class of the model, as placed in WordNet: its id, display name, synset and extra synonyms."""

    id: int
    name: str
    wnid: str
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class Concept:
    """What a word resolved to.

    Attributes:
        name: the concept as an answer names it (the user's word in the singular, or the word it was read as).
        class_ids: the model classes it covers (its WordNet descendants).
        wnid: the WordNet synset, None for a class name or synonym matched directly.
        via: how it was found: "class" (a class name or synonym), "wordnet" (a WordNet noun with classes
            below it), "broader" (no class below the word: its nearest narrow ancestor), "related" (a class
            named after the word: "lake" -> lakeside), "spelling" (a near-miss spelling of a known word).
        said: the word as the user typed it (normalised).
    """

    name: str
    class_ids: frozenset[int]
    wnid: str | None
    via: str
    said: str

    @property
    def note(self) -> str | None:
        """How the answer should say what it looked for, when that is not simply the word asked."""
        if self.via == "spelling":
            return f"reading {self.said!r} as {self.name!r}"
        if self.via == "broader":
            return f"I have no class for {self.said!r} itself, so I looked for {self.name}"
        if self.via == "related":
            return f"I have no class for {self.said!r} itself, so I looked for what is named after it"
        return None


class UnknownConcept(ValueError):
    """A word reaches no concept the model can see; carries concepts it can see that lie near it."""

    def __init__(self, query: str, suggestions: Sequence[str], *, is_noun: bool) -> None:
        self.query = query
        self.suggestions = list(suggestions)
        self.is_noun = is_noun
        listed = ", ".join(repr(s) for s in self.suggestions)
        if is_noun:
            what = "no class of the model stands for it" + (f"; it can see e.g. {listed}" if listed else "")
        else:
            what = "not a word I know for a thing" + (f"; did you mean {listed}?" if listed else "")
        super().__init__(f"unknown label {query!r}: {what}")


class ConceptIndex:
    """The model's classes placed in WordNet's noun hierarchy.

    Args:
        classes: every class of the model, ids 0..C-1.
        wordnet: the noun database.
        examples: concepts offered when a word has no near neighbour (things the model can see).
    """

    def __init__(self, classes: Sequence[ModelClass], wordnet: WordNet, examples: Sequence[str]) -> None:
        self.classes = list(classes)
        self.wordnet = wordnet
        self.examples = tuple(examples)
        self.by_term: dict[str, set[int]] = {}
        for c in self.classes:
            lemmas = wordnet.synsets[c.wnid].lemmas if c.wnid in wordnet.synsets else ()
            for term in (c.name, *c.synonyms, *lemmas):
                self.by_term.setdefault(norm(term), set()).add(c.id)
        self.members: dict[str, set[int]] = {}  # wnid -> class ids at or below it
        for c in self.classes:
            for node, _ in wordnet.ancestors(c.wnid):
                self.members.setdefault(node, set()).add(c.id)
        self._known = sorted(
            {*self.by_term, *(t for t, ids in wordnet.senses.items() if any(i in self.members for i in ids))}
        )

    # --------------------------------------------------------------------------------------- resolve
    def resolve(self, query: str, *, spelling: bool = True) -> Concept:
        """The concept a word or phrase stands for.

        Order: an alias ("bike"), a class id ("281"); then for the word and its base forms (plurals,
        WordNet's exceptions): a class name or synonym (every class carrying it: "crane" is a bird and a
        machine), else its first WordNet sense with classes below it ("flower" -> daisy, lady's slipper;
        "vehicle" -> 67 classes); else its first sense's hypernym when that has at most
        `BROADER_MAX_CLASSES` classes or is an everyday word ("puppy" -> dog); else classes named after it
        ("lake" -> lakeside); else, for a word WordNet does not know and with `spelling`, its nearest
        spelling ("flowr"; a rule asks without, so a typo there is refused with "did you mean").

        Raises:
            UnknownConcept: (a ValueError) with concepts the model can see near the word.
        """
        said = norm(query)
        term = ALIASES.get(said, said)
        if term.isdigit() and int(term) < len(self.classes):
            return Concept(self.classes[int(term)].name, frozenset({int(term)}), None, "class", said)
        forms = list(dict.fromkeys([term, *self.wordnet.base_forms(term), *_plural_guesses(term)]))
        forms = [ALIASES.get(f, f) for f in forms]
        for form in forms:
            found = self._direct(form, said)
            if found is not None:
                return found
        for form in forms:
            found = self._broader(form, said) or self._related(form, said)
            if found is not None:
                return found
        is_noun = any(f in self.wordnet.senses for f in forms)
        if not is_noun and spelling:
            close = difflib.get_close_matches(term, self._known, n=1, cutoff=SPELLING_CUTOFF)
            if close:
                found = self._direct(close[0], said)
                if found is not None:
                    return Concept(found.name, found.class_ids, found.wnid, "spelling", said)
        raise UnknownConcept(query, self.suggest(forms), is_noun=is_noun)

    def _direct(self, form: str, said: str) -> Concept | None:
        if form in self.by_term:
            return Concept(form, frozenset(self.by_term[form]), None, "class", said)
        for wnid in self.wordnet.senses.get(form, ()):
            if wnid in self.members:
                return Concept(form, frozenset(self.members[wnid]), wnid, "wordnet", said)
        return None

    def _broader(self, form: str, said: str) -> Concept | None:
        """The word's first sense has no class below it but its direct hypernym has a few ("puppy" -> dog);
        a grandparent is never borrowed ("tree" -> vascular plant would answer with daisies)."""
        for wnid in self.wordnet.senses.get(form, ())[:1]:  # the first sense: what people mostly mean
            for up in self.wordnet.synsets[wnid].hypernyms:
                ids = self.members.get(up)
                if ids and (len(ids) <= BROADER_MAX_CLASSES or self.name_of(up) in ALIASES.values()):
                    return Concept(self.name_of(up), frozenset(ids), up, "broader", said)
        return None

    def _related(self, form: str, said: str) -> Concept | None:
        """Classes named after a noun that has none of its own, whose definition names it too ("lake" ->
        lakeside, "the shore of a lake"; not the Lakeland terrier)."""
        if len(form) < 4 or form not in self.wordnet.senses:
            return None
        ids = set()
        for c in self.classes:
            words = [w for term in (c.name, *c.synonyms) for w in norm(term).replace("-", " ").split()]
            gloss = self.wordnet.synsets[c.wnid].gloss.lower() if c.wnid in self.wordnet.synsets else ""
            if any(w.startswith(form) or w.endswith(form) for w in words) and form in gloss.split():
                ids.add(c.id)
        return (
            Concept(form, frozenset(ids), None, "related", said)
            if 0 < len(ids) <= RELATED_MAX_CLASSES
            else None
        )

    def suggest(self, forms: Sequence[str], n: int = 5) -> list[str]:
        """Concepts the model can see near `forms`: classes under the nearest ancestor that has any, else
        known words spelt alike, else the default examples."""
        for form in forms:
            for wnid in self.wordnet.senses.get(form, ())[:2]:
                for node, _ in self.wordnet.ancestors(wnid):
                    if self.nameable(node):
                        names = [self.classes[i].name for i in sorted(self.members[node])]
                        return [self.name_of(node), *names][:n]
        if any(f in self.wordnet.senses for f in forms):
            return list(self.examples)  # a real word with nothing near it: spelling neighbours would mislead
        close = difflib.get_close_matches(forms[0] if forms else "", self._known, n=n, cutoff=0.75)
        return close or list(self.examples)

    # --------------------------------------------------------------------------------------- climb
    def name_of(self, wnid: str) -> str:
        """The word an answer uses for a synset: its first lemma."""
        return self.wordnet.synsets[wnid].lemmas[0]

    def nameable(self, wnid: str) -> bool:
        """A synset an answer may name: it covers model classes and is not too vague ("artifact")."""
        return wnid in self.members and self.name_of(wnid) not in VAGUE

    def path_up(self, class_id: int) -> list[str]:
        """The nameable synsets at or above a class, nearest first (the class's own synset first)."""
        return [n for n, _ in self.wordnet.ancestors(self.classes[class_id].wnid) if self.nameable(n)]


def _plural_guesses(term: str) -> list[str]:
    """Singulars WordNet's rules miss for words it does not know (class names like "goldfishes")."""
    return [term[: -len(s)] + r for s, r in (("ies", "y"), ("es", ""), ("s", "")) if term.endswith(s)]
