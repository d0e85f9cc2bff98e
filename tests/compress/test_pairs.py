"""Consolidation rounds: which cached pairs a round may take, and which of them it may keep."""

from __future__ import annotations

import torch

from compress.pairs import candidate_pairs, safe_pairs


def pairs(nn_sim: list[float], nn_idx: list[int], ids: list[int], limit: int = 8) -> tuple[list[int], ...]:
    a, b, values = candidate_pairs(torch.tensor(nn_sim), torch.tensor(nn_idx), torch.tensor(ids), limit)
    return a.tolist(), b.tolist(), [round(v, 3) for v in values.tolist()]


def test_pairs_come_most_similar_first_and_the_older_id_survives() -> None:
    assert pairs([0.9, 0.9, 0.8, 0.8, 0.7], [1, 0, 3, 2, 2], [5, 4, 3, 2, 1]) == ([1, 3], [0, 2], [0.9, 0.8])
    assert pairs([0.9, 0.9, 0.8, 0.8, 0.7], [1, 0, 3, 2, 2], [5, 4, 3, 2, 1], limit=1) == ([1], [0], [0.9])


def test_the_walk_stops_at_an_entry_whose_neighbour_is_merged_and_at_a_tie() -> None:
    # row 4's neighbour (row 0) merges in the first pair: its best is unknown, so nothing after it is taken
    assert pairs([0.9, 0.9, 0.8, 0.8, 0.85], [1, 0, 3, 2, 0], [0, 1, 2, 3, 4]) == ([0], [1], [0.9])
    # two different pairs equally similar: which goes first depends on row order, so the round takes one
    assert pairs([0.9, 0.9, 0.9, 0.9], [1, 0, 3, 2], [0, 1, 2, 3]) == ([0], [1], [0.9])


def test_a_pair_is_kept_only_if_no_earlier_merge_made_a_closer_pair() -> None:
    a, b, value = torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([0.9, 0.8])
    far = torch.tensor([[0.95, 0.95, 0.1, 0.2, 0.3], [0.1, 0.2, 0.9, 0.9, 0.3]])  # [merged, entries]
    assert safe_pairs(far, torch.eye(2), a, b, value) == 2
    near_outsider = far.clone()
    near_outsider[0, 4] = 0.85  # merged pair 0 is now closer to entry 4 than pair 1 is to itself
    assert safe_pairs(near_outsider, torch.eye(2), a, b, value) == 1
    near_pair = far.clone()
    near_pair[0, 3] = 0.8  # ... or as close to a row of pair 1
    assert safe_pairs(near_pair, torch.eye(2), a, b, value) == 1


def test_two_merged_entries_closer_to_each_other_than_the_next_pair_end_the_round() -> None:
    a, b, value = torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5]), torch.tensor([0.9, 0.8, 0.7])
    p = torch.full((3, 6), 0.1)
    assert safe_pairs(p, torch.eye(3), a, b, value) == 3
    close = torch.tensor([[1.0, 0.75, 0.0], [0.75, 1.0, 0.0], [0.0, 0.0, 1.0]])  # merged 0 and 1: 0.75 >= 0.7
    assert safe_pairs(p, close, a, b, value) == 2
