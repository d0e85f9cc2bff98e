"""People in frames: the `PeopleDetector` protocol and its MediaPipe backend, run in a worker process.

The embedded model is an ImageNet classifier with no person class; this is the optional labeler that says
`person` and `face` (with a face count). MediaPipe (face detection and pose, Apache-2.0, weights inside the
wheel) pins protobuf<5, which the service's environment cannot hold, so it runs in its own interpreter
(`people_worker.py`, a venv `scripts/people-venv` makes) behind a pipe. A worker that dies, hangs or answers
nonsense is killed and started again on the next frame; the call that saw it fail raises `DetectorFailed`,
which callers count and skip. Nothing here loads at import.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from agent.models.base import ModelError

if TYPE_CHECKING:
    from agent.settings import PeopleOptions

log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("people_worker.py")
HEADER_MAGIC = b"SCP1"
# Where `scripts/people-venv` puts the people interpreter by default: `.venv-people` in the checkout.
DEFAULT_PYTHON = Path(__file__).resolve().parents[2] / ".venv-people" / "bin" / "python"


class DetectorUnavailable(ModelError):
    """The people detector cannot start (no interpreter, mediapipe missing or broken)."""


class DetectorFailed(ModelError):
    """One detection failed (the worker died, hung or answered nonsense); the worker restarts on the next."""


@dataclass(frozen=True)
class Face:
    """One face box, in [0, 1] of the frame: left, top, width, height, and the detector's score."""

    x: float
    y: float
    w: float
    h: float
    score: float


@dataclass(frozen=True)
class People:
    """What one frame holds: faces (boxes), a pose score (a body was found) and the seconds it took.

    `persons` is a lower bound: the pose model finds one body a frame, so it is max(faces, 1 if a body).
    """

    faces: tuple[Face, ...]
    pose_score: float | None
    seconds: float

    @property
    def face_count(self) -> int:
        """Faces found."""
        return len(self.faces)

    @property
    def persons(self) -> int:
        """People at least present: every face is one, and a body without a face found is one."""
        return max(len(self.faces), 1 if self.pose_score is not None else 0)

    @property
    def person_score(self) -> float:
        """The best evidence of a person (a face's or the body's score), 0 when none."""
        return max([f.score for f in self.faces] + [self.pose_score or 0.0])


@runtime_checkable
class PeopleDetector(Protocol):
    """RGB frames -> `People`. Thread-safe; blocking (callers run it in a worker thread)."""

    name: str

    def detect(self, rgb: npt.NDArray[np.uint8], aspect: float | None = None) -> People:
        """People in one `uint8[H, W, 3]` frame; `aspect` is the source's width/height when the frame was
        resized without keeping it (the detector restores it). Raises `DetectorFailed` for this frame."""
        ...

    def close(self) -> None:
        """Stop whatever the detector runs; a later `detect` may start it again."""
        ...


@dataclass(frozen=True)
class WorkerOptions:
    """How the MediaPipe worker runs (see `agent.settings.PeopleOptions`)."""

    python: Path = DEFAULT_PYTHON
    face_model: str = "full"  # "short" (faces within ~2 m) or "full" (up to ~5 m)
    min_face_score: float = 0.5
    min_pose_score: float = 0.8  # below it the pose detector fires on cartoon rabbits and fences
    pose: bool = True
    start_timeout_s: float = 60.0
    frame_timeout_s: float = 10.0


class WorkerDetector:
    """MediaPipe in a child process of its own interpreter; restarts it after a failure."""

    name = "mediapipe"

    def __init__(self, options: WorkerOptions | None = None) -> None:
        self.options = options or WorkerOptions()
        self._lock = threading.Lock()  # one request on the pipe at a time
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0  # workers started (more than 1: restarts after failures)
        self.failures = 0  # detections that raised DetectorFailed
        self.version = ""

    def detect(self, rgb: npt.NDArray[np.uint8], aspect: float | None = None) -> People:
        """People in `rgb` `uint8[H, W, 3]` (see `PeopleDetector.detect`)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected uint8[H, W, 3], got {rgb.dtype}{list(rgb.shape)}")
        height, width = rgb.shape[:2]
        head = np.array([height, width], "<u4").tobytes() + np.array([aspect or 0.0], "<f4").tobytes()
        with self._lock:
            proc = self._running()
            started = time.perf_counter()
            try:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(HEADER_MAGIC + head)
                proc.stdin.write(np.ascontiguousarray(rgb).tobytes())
                proc.stdin.flush()
                reply = _read_line(proc.stdout, self.options.frame_timeout_s)
            except (OSError, ValueError, TimeoutError) as exc:
                raise self._failed(f"{type(exc).__name__}: {exc}") from None
            seconds = time.perf_counter() - started
        try:
            message = json.loads(reply)
            faces = tuple(Face(*map(float, box)) for box in message["faces"])
            pose = message["pose"]
        except (ValueError, KeyError, TypeError) as exc:
            with self._lock:
                raise self._failed(f"bad reply {reply[:200]!r}: {exc}") from None
        return People(faces, None if pose is None else float(pose), seconds)

    def close(self) -> None:
        """Close the worker's stdin (it exits), then kill it if it lingers."""
        with self._lock:
            self._stop()

    @property
    def restarts(self) -> int:
        """Workers started again after the first (each after a failure or an exit)."""
        return max(0, self.starts - 1)

    def pid(self) -> int | None:
        """The running worker's process id (None when none runs)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # ------------------------------------------------------------------------------------------ process
    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            log.warning("people worker exited (%s): starting it again", self._proc.returncode)
            self._stop()
        self._proc = self._spawn()
        return self._proc

    def _spawn(self) -> subprocess.Popen[bytes]:
        opts = self.options
        if not opts.python.is_file():
            raise DetectorUnavailable(f"no people interpreter at {opts.python} (run scripts/people-venv)")
        argv = [str(opts.python), str(WORKER), "--face-model", opts.face_model]
        argv += ["--min-face-score", str(opts.min_face_score), "--min-pose-score", str(opts.min_pose_score)]
        if not opts.pose:
            argv.append("--no-pose")
        env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
        # Its own process group: a Ctrl-C to the service is the service's to handle, and it closes us.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            ready = json.loads(_read_line(proc.stdout, opts.start_timeout_s))
        except (OSError, ValueError, TimeoutError) as exc:
            _kill(proc)
            raise DetectorUnavailable(f"people worker did not start: {exc}") from None
        if not isinstance(ready, dict) or not ready.get("ready"):
            _kill(proc)
            raise DetectorUnavailable(f"people worker did not start: {ready}")
        self.version = str(ready.get("mediapipe", ""))
        self.starts += 1
        log.info("people worker %d ready (mediapipe %s)", proc.pid, self.version)
        return proc

    def _failed(self, why: str) -> DetectorFailed:
        # Called with the lock held: the broken worker goes now, the next detect starts a fresh one.
        self.failures += 1
        self._stop()
        log.warning("people detection failed (%s): the worker restarts on the next frame", why)
        return DetectorFailed(why)

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):  # already broken: the kill below ends it
                proc.stdin.close()
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            _kill(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def _read_line(stream: IO[bytes], timeout_s: float) -> bytes:
    """One line from a child's stdout within `timeout_s`: TimeoutError past it, EOFError-as-OSError at EOF."""
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        raise TimeoutError(f"no reply within {timeout_s:g} s")
    line = stream.readline()
    if not line.endswith(b"\n"):
        raise OSError("the worker closed its output")
    return line


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=5.0)


def detector_from_settings(options: PeopleOptions) -> WorkerDetector | None:
    """The detector `SCISSOR_PEOPLE__*` asks for: None when off, or `auto` without its interpreter;
    DetectorUnavailable when `mediapipe` is asked for and its interpreter is not there. Starts no process
    (the first frame does)."""
    if options.backend == "off":
        return None
    python = options.python or DEFAULT_PYTHON
    if not python.is_file():
        if options.backend == "mediapipe":
            raise DetectorUnavailable(f"no people interpreter at {python} (run scripts/people-venv)")
        log.info("no people interpreter at %s: person and face detection is off", python)
        return None
    return WorkerDetector(
        WorkerOptions(
            python=python,
            face_model=options.face_model,
            min_face_score=options.min_face_score,
            min_pose_score=options.min_pose_score,
        )
    )
