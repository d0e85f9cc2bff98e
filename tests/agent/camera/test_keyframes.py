"""KeyframeStore: the camera's aspect ratio, only frames named as evidence, the byte budget, no stand-ins."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from skimage import data

from agent.camera.keyframes import KeyframeStore

_astronaut: Callable[[], npt.NDArray[np.uint8]] = data.astronaut  # skimage is untyped
SQUASHED = np.ascontiguousarray(_astronaut())  # 512x512, as decoded at a model's square size


def pixels(seed: int, side: int = 64) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def test_a_keyframe_has_the_cameras_aspect_ratio_and_the_longest_side_setting() -> None:
    store = KeyframeStore(max_side=640)
    frame = store.encode(7, 3.5, SQUASHED, aspect=640 / 272)
    with Image.open(io.BytesIO(frame.jpeg)) as image:
        assert image.format == "JPEG"
        assert image.size == (frame.width, frame.height)
    assert frame.width == 512  # never upscaled past the decoded pixels
    assert abs(frame.width / frame.height - 640 / 272) < 0.01
    portrait = store.encode(8, 4.0, SQUASHED, aspect=0.5)
    assert (portrait.width, portrait.height) == (256, 512)
    small = KeyframeStore(max_side=200).encode(9, 4.5, SQUASHED, aspect=640 / 272)
    assert max(small.width, small.height) == 200


def test_only_frames_named_as_evidence_stay_and_a_gone_frame_is_none_not_another() -> None:
    store = KeyframeStore()
    for i in range(5):
        store.add(store.encode(i, i * 0.5, pixels(i), None))
    store.retain({1: 30, 3: 5})
    assert store.kept() == [1, 3]
    assert store.get(2) is None
    assert store.at(1.0) is None  # frame 2 was at t=1.0: gone, and no neighbour stands in for it
    found = store.at(0.5)
    assert found is not None and found.frame == 1
    latest = store.latest()
    assert latest is not None and latest.frame == 4  # the live view keeps the newest frame
    assert store.bytes == sum(len(k.jpeg) for k in (store.get(1), store.get(3)) if k is not None)


def test_over_budget_the_least_supported_oldest_frames_go_first() -> None:
    probe = KeyframeStore().encode(0, 0.0, pixels(0), None)
    store = KeyframeStore(budget_bytes=int(len(probe.jpeg) * 3.5))
    for i in range(6):
        store.add(store.encode(i, float(i), pixels(0), None))
    store.retain({0: 1, 1: 50, 2: 1, 3: 50, 4: 2, 5: 1})
    assert store.kept() == [1, 3, 4]  # support 1 goes first (oldest first), then the budget holds
    assert store.dropped_total == 3
    assert store.bytes <= store.budget_bytes


def test_the_frame_count_cap_holds_too() -> None:
    store = KeyframeStore(max_frames=2)
    for i in range(4):
        store.add(store.encode(i, float(i), pixels(i), None))
    store.retain({0: 9, 1: 1, 2: 9, 3: 1})
    assert store.kept() == [0, 2]


@pytest.mark.parametrize("bad", [{"budget_bytes": 0}, {"max_frames": 0}, {"max_side": 8}, {"quality": 100}])
def test_invalid_settings_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="need budget_bytes"):
        KeyframeStore(**bad)


def test_a_pinned_frame_outlives_its_interval_until_newer_pins_push_it_out() -> None:
    store = KeyframeStore()
    for i in range(4):
        store.add(store.encode(i, float(i), pixels(i), None))
    assert store.pin(1, max_pins=2) and store.pin(2, max_pins=2)
    assert not store.pin(99)  # never kept: nothing to pin
    store.retain({3: 4})
    assert store.kept() == [1, 2, 3]
    store.add(store.encode(4, 4.0, pixels(4), None))
    store.pin(4, max_pins=2)  # frame 1 is the oldest pin: it goes at the next retain
    store.retain({3: 4})
    assert store.kept() == [2, 3, 4]
