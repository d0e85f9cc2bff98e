"""Consolidation rounds: which cached pairs a round may take, and which of them it may keep."""

from __future__ import annotations

import torch

from compress.pairs import candidate_pairs, mutual_pairs, nearest_forest, safe_pairs


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


def test_mutual_pairs_are_disjoint_most_similar_first_and_always_hold_the_best_pair() -> None:
    # rows 0-1 and 2-3 are mutual; row 4 points at 2, which prefers 3
    a, b, _, k = mutual_pairs(
        torch.tensor([0.9, 0.9, 0.8, 0.8, 0.7]),
        torch.tensor([1, 0, 3, 2, 2]),
        torch.tensor([5, 4, 3, 2, 1]),
        4,
    )
    assert int(k) == 2 and a[:2].tolist() == [1, 3] and b[:2].tolist() == [0, 2]
    # a float near-tie cycle (0 -> 1 -> 2 -> 0) has no mutual pair: the most similar link is taken anyway
    a, b, _, k = mutual_pairs(
        torch.tensor([0.9, 0.8999, 0.8998]), torch.tensor([1, 2, 0]), torch.tensor([0, 1, 2]), 2
    )
    assert int(k) == 1 and (a[0].item(), b[0].item()) == (0, 1)


def test_the_forest_takes_the_most_similar_links_and_sends_each_row_to_its_trees_root() -> None:
    # 0 -> 1 <-> 2 (mutual, 2 the root: the higher row of the tie), 3 -> 2, 4 <-> 5, 6 -> 4 (weak)
    sim = torch.tensor([0.8, 0.95, 0.95, 0.7, 0.9, 0.9, 0.1])
    idx = torch.tensor([1, 2, 1, 2, 5, 4, 4])
    away, root, k = nearest_forest(sim, idx, 5)
    assert int(k) == 5
    assert away.tolist() == [1, 4, 0, 3, 6] and root.tolist() == [2, 5, 2, 2, 5]
    away, root, k = nearest_forest(sim, idx, 2)  # only the two mutual pairs
    assert int(k) == 2 and sorted(zip(away.tolist(), root.tolist(), strict=True)) == [(1, 2), (4, 5)]
    away, _, k = nearest_forest(sim, torch.tensor([-1, -1, -1, -1, -1, -1, -1]), 3)
    assert int(k) == 0 and away.tolist() == [-1, -1, -1]


def test_forest_links_are_acyclic_whatever_the_cached_values() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        m = 12
        sim = torch.rand(m, generator=g).round(decimals=1)  # many ties
        idx = (torch.arange(m) + torch.randint(1, m, (m,), generator=g)) % m  # never itself
        away, root, k = nearest_forest(sim, idx, m)
        n = int(k)
        assert len(set(away[:n].tolist())) == n  # each row merges away once
        assert not set(root[:n].tolist()) & set(away[:n].tolist())  # roots stay
