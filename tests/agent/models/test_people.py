"""The person / face detector, for real: MediaPipe in its worker process on real images (scripts/people-venv
makes its interpreter; scripts/test runs it, so these tests never skip in CI)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.models.people import (
    DEFAULT_PYTHON,
    DetectorFailed,
    DetectorUnavailable,
    WorkerDetector,
    WorkerOptions,
    detector_from_settings,
)
from agent.settings import PeopleOptions
from bench.people import labelled_frames, still_path


def people_python() -> Path:
    """The people interpreter; a missing one fails (never skips): run scripts/people-venv."""
    python = Path(os.environ.get("SCISSOR_PEOPLE__PYTHON") or DEFAULT_PYTHON)
    if not python.is_file():
        pytest.fail(f"no people interpreter at {python}: run scripts/people-venv")
    return python


@pytest.fixture(scope="module")
def detector() -> Iterator[WorkerDetector]:
    worker = WorkerDetector(WorkerOptions(python=people_python()))
    yield worker
    worker.close()


def squashed(package: str, name: str, size: int = 448) -> tuple[np.ndarray, float]:
    """A still as the pipeline's frames come: squashed to the encoder's input, with its aspect."""
    with Image.open(still_path(package, name)) as image:
        rgb = image.convert("RGB")
    return np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR)), rgb.width / rgb.height


@pytest.mark.parametrize(
    ("package", "name"), [("skimage", "astronaut.png"), ("matplotlib", "grace_hopper.jpg")]
)
def test_a_person_is_found_with_one_face(detector: WorkerDetector, package: str, name: str) -> None:
    people = detector.detect(*squashed(package, name))
    assert people.persons == 1 and people.face_count == 1
    face = people.faces[0]
    assert 0.5 <= face.score <= 1.0 and 0.0 < face.w < 1.0 and 0.0 < face.h < 1.0
    assert people.person_score >= 0.5


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png", "coins.png"])
def test_a_cat_a_coffee_and_heads_on_coins_are_no_people(detector: WorkerDetector, name: str) -> None:
    people = detector.detect(*squashed("skimage", name))
    assert people.persons == 0 and people.face_count == 0 and people.person_score == 0.0


def test_the_cyclist_in_bikes_is_found_without_a_face_box(detector: WorkerDetector) -> None:
    frame = next(f for f in labelled_frames(sources={"bikes.mp4"}) if f.name == "frame 130")
    people = detector.detect(frame.rgb, frame.aspect)
    assert people.persons == 1 and people.pose_score is not None  # the body, though the face is too small


def test_a_killed_worker_fails_one_frame_and_the_next_frame_runs_on_a_new_one() -> None:
    worker = WorkerDetector(WorkerOptions(python=people_python()))
    rgb, aspect = squashed("skimage", "astronaut.png")
    try:
        assert worker.detect(rgb, aspect).face_count == 1
        first = worker.pid()
        assert first is not None
        os.kill(first, signal.SIGKILL)
        try:
            worker.detect(rgb, aspect)  # a dead worker is either found at once (restarted) or fails once
        except DetectorFailed:
            assert worker.failures == 1
        assert worker.detect(rgb, aspect).face_count == 1
        assert worker.pid() not in (None, first) and worker.restarts == 1
    finally:
        worker.close()
    assert worker.pid() is None


def test_a_hung_worker_times_out_and_is_replaced(tmp_path: Path) -> None:
    hang = tmp_path / "python"
    hang.write_text('#!/bin/sh\necho \'{"ready": true, "mediapipe": "fake"}\'\nexec sleep 60\n')
    hang.chmod(0o755)
    worker = WorkerDetector(WorkerOptions(python=hang, frame_timeout_s=0.5))
    with pytest.raises(DetectorFailed, match="no reply"):
        worker.detect(np.zeros((32, 32, 3), np.uint8))
    assert worker.pid() is None and worker.failures == 1  # killed, not left behind
    worker.close()


def test_a_worker_that_cannot_start_is_unavailable(tmp_path: Path) -> None:
    broken = tmp_path / "python"
    broken.write_text('#!/bin/sh\necho \'{"error": "ModuleNotFoundError: mediapipe"}\'\nexit 1\n')
    broken.chmod(0o755)
    with pytest.raises(DetectorUnavailable, match="mediapipe"):
        WorkerDetector(WorkerOptions(python=broken)).detect(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DetectorUnavailable, match="no people interpreter"):
        WorkerDetector(WorkerOptions(python=tmp_path / "none")).detect(np.zeros((32, 32, 3), np.uint8))


def test_frames_that_are_not_rgb_bytes_are_refused_before_the_pipe() -> None:
    worker = WorkerDetector(WorkerOptions(python=Path("/nonexistent")))
    with pytest.raises(ValueError, match="uint8"):
        worker.detect(np.zeros((8, 8), np.uint8))


def test_the_settings_choose_the_detector(tmp_path: Path) -> None:
    assert detector_from_settings(PeopleOptions()) is None  # off by default
    missing = tmp_path / "nothing" / "python"
    assert detector_from_settings(PeopleOptions(backend="auto", python=missing)) is None
    with pytest.raises(DetectorUnavailable):
        detector_from_settings(PeopleOptions(backend="mediapipe", python=missing))
    found = detector_from_settings(PeopleOptions(backend="auto", python=people_python(), min_pose_score=0.9))
    assert found is not None and found.options.min_pose_score == 0.9 and found.pid() is None  # not started
