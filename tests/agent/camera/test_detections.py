"""A camera's people over time: the detection track's presence runs and counts, the feed's pacing, and a
real file camera feeding the track through the pipeline."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from agent.camera.detections import Detection, DetectionTrack, PeopleFeed, Presence
from agent.models import Backend, load_backend
from agent.models.people import DetectorFailed, Face, People
from tests.agent.models.test_people import people_python
from tests.agent.service_harness import running_service, video_camera, wait_until


def track_of(counts: Sequence[tuple[float, int, int]], **kwargs: float) -> DetectionTrack:
    track = DetectionTrack(**kwargs)  # type: ignore[arg-type]
    for i, (t, persons, faces) in enumerate(counts):
        track.add(Detection(t, 10 * i, persons, faces, 0.5 + 0.1 * persons))
    return track


# t: 0 1 2 3 4 5 6 7 8 | a gap of 10 s | 19 20
SERIES = [(0, 0, 0), (1, 1, 1), (2, 2, 1), (3, 1, 0), (4, 0, 0), (5, 0, 0), (6, 1, 1), (7, 1, 1), (8, 1, 0)]
SERIES += [(19, 1, 2), (20, 1, 2)]


def test_presence_runs_end_at_an_empty_frame_or_a_gap_and_name_their_best_frame() -> None:
    runs = track_of(SERIES).intervals("person")
    assert [(r.start_s, r.end_s, r.max_count, r.frames) for r in runs] == [
        (1, 3, 2, 3),
        (6, 8, 1, 3),
        (19, 20, 1, 2),  # 11 s after t=8: the detector did not run between, so the run is cut there
    ]
    assert (runs[0].best_frame, runs[0].best_t) == (20, 2)  # the most people on one frame
    assert runs[1].best_frame == 60  # a tie on count and score: the earliest
    faces = track_of(SERIES).intervals("face")
    assert [(r.start_s, r.end_s, r.max_count) for r in faces] == [(1, 2, 1), (6, 7, 1), (19, 20, 2)]


def test_runs_are_cut_to_the_range_asked_and_never_name_a_second_outside_it() -> None:
    track = track_of(SERIES)
    assert [(r.start_s, r.end_s) for r in track.intervals("person", 2.5, 7.0)] == [(3, 3), (6, 7)]
    assert track.intervals("person", 4.0, 5.9) == []
    assert track.intervals("person", since=19.5) == [Presence("person", 20, 20, 1, 100, 20, 1)]


def test_count_at_is_the_nearest_detection_within_the_tolerance_and_unknown_beyond() -> None:
    track = track_of(SERIES)
    assert track.count_at("face", 2.2) == 1 and track.count_at("person", 2.2) == 2
    assert track.count_at("face", 19.6) == 2
    assert track.count_at("person", 4.5) == 0  # 0 seen, not unknown
    assert track.count_at("person", 13.5) is None  # 5.5 s from the nearest detection: nothing known
    assert track.count_at("person", 13.5, tolerance_s=6.0) == 1
    nearest = track.nearest(6.9)
    assert nearest is not None and (nearest.t, nearest.frame) == (7, 70)


def test_the_track_is_bounded_and_round_trips_through_its_state_dict() -> None:
    track = track_of([(float(t), t % 2, 0) for t in range(10)], capacity=4)
    assert len(track) == 4 and track.covered() == (6.0, 9.0)
    copy = DetectionTrack(capacity=4)
    copy.load_state_dict(track.state_dict())
    assert copy.between() == track.between() and copy.state_dict() == track.state_dict()
    with pytest.raises(ValueError, match="step back"):
        copy.load_state_dict({**track.state_dict(), "t": [3.0, 2.0, 1.0, 0.0]})
    with pytest.raises(ValueError):
        DetectionTrack(capacity=0)


def test_a_detection_never_steps_behind_the_newest() -> None:
    track = track_of([(5.0, 1, 1)])
    track.add(Detection(4.0, 99, 0, 0, 0.0))
    assert [d.t for d in track.between()] == [5.0, 5.0]


class SlowDetector:
    """A stand-in detector: one face per call, blocking until released, failing when told to."""

    name = "fake"

    def __init__(self) -> None:
        self.release, self.calls, self.fail = threading.Event(), 0, False

    def detect(self, rgb: np.ndarray, aspect: float | None = None) -> People:
        self.calls += 1
        self.release.wait(5.0)
        if self.fail:
            raise DetectorFailed("worker died")
        return People((Face(0.1, 0.1, 0.2, 0.2, 0.9),), None, 0.01)

    def close(self) -> None:
        pass


async def test_the_feed_runs_at_its_fps_one_frame_at_a_time_and_never_waits() -> None:
    detector, track = SlowDetector(), DetectionTrack()
    feed = PeopleFeed(detector, track, fps=2.0)
    rgb = np.zeros((8, 8, 3), np.uint8)
    assert feed.offer(rgb, t=0.0, frame=0, aspect=None)  # taken, running in its thread
    assert not feed.offer(rgb, t=0.25, frame=1, aspect=None)  # not due yet (2 fps)
    assert not feed.offer(rgb, t=0.5, frame=2, aspect=None)  # due, but the first still runs: skipped
    assert feed.frames_skipped == 1 and len(track) == 0
    detector.release.set()
    await feed.drain()
    assert [(d.t, d.frame, d.persons, d.faces) for d in track.between()] == [(0.0, 0, 1, 1)]
    assert feed.offer(rgb, t=0.6, frame=3, aspect=None)
    detector.fail = True
    await feed.drain()
    assert feed.failures == 1 and len(track) == 1  # a failed frame is counted and left out
    detector.fail = False
    assert feed.offer(rgb, t=1.2, frame=4, aspect=None)
    await asyncio.wait_for(feed.drain(), 5.0)
    assert feed.frames_detected == 2 and [d.frame for d in track.between()] == [0, 4]


@pytest.fixture(scope="module")
def embedded() -> Backend:
    return load_backend("embedded", device="cpu")


async def test_a_file_camera_feeds_the_track_at_the_detectors_fps_through_the_pipeline(
    embedded: Backend,
) -> None:
    people = {"backend": "mediapipe", "python": str(people_python()), "fps": 2.0}
    async with running_service(embedded, allow_file_urls=True, people=people) as run:
        for camera in (video_camera("car", fps=4.0, video="carphone_pristine.mp4"), video_camera("bunny")):
            created = await run.client.post("/cameras", json=camera)
            assert created.status_code == 201, created.text
        car, bunny = run.service.cameras.get("car"), run.service.cameras.get("bunny")
        assert car.people_detector == "mediapipe"
        await wait_until(lambda: min(len(car.detections()), len(bunny.detections())) >= 4, what="detections")
        seen = car.detections()
        assert all(b.t - a.t >= 0.5 - 1e-6 for a, b in itertools.pairwise(seen))  # 2 fps, not 4
        assert all(d.persons == 1 and d.faces == 1 for d in seen)  # the man in the car, face to camera
        runs = car.presence("face")
        assert runs and runs[0].start_s == seen[0].t and runs[0].max_count == 1
        assert bunny.presence("person") == [] and all(d.persons == 0 for d in bunny.detections())
        nearest = car.detection_at(seen[1].t + 0.1)
        assert nearest is not None and nearest.frame == seen[1].frame
