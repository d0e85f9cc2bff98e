"""The people detector's worker process: MediaPipe face detection and pose, one frame per request on a pipe.

Run by the people interpreter (`scripts/people-venv` makes it), never imported by the service: this file
imports only the standard library, numpy, OpenCV and MediaPipe, whose protobuf<5 cannot share the service's
environment. `agent.models.people.WorkerDetector` starts it as `python people_worker.py [options]`.

Protocol (stdin -> stdout, one request at a time):
- on start the worker writes one JSON line: `{"ready": true, "mediapipe": VERSION}` (or `{"error": ...}`
  and exits 1);
- a request is a 16-byte header `<4sIIf` (magic b"SCP1", height, width, source aspect or 0), then
  height * width * 3 bytes of RGB;
- the reply is one JSON line: `{"faces": [[x, y, w, h, score], ...], "pose": score or null, "ms": float}
  (`pose` is the pose threshold when a body was found: the graph does not report the detector's score)`,
  boxes in [0, 1] of the frame; a bad request gets `{"error": ...}` and the worker exits 2.

Weights: the .tflite files inside the mediapipe wheel (Apache-2.0); nothing is fetched at run time (pose runs
at model complexity 1, the only pose landmark model the wheel ships).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from typing import Any, BinaryIO

HEADER = struct.Struct("<4sIIf")
MAGIC = b"SCP1"
MAX_SIDE = 8192


def main(argv: list[str]) -> int:
    """Serve requests on stdin until it closes; 0 at a clean end."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--face-model", choices=("short", "full"), default="full")
    parser.add_argument("--min-face-score", type=float, default=0.5)
    parser.add_argument("--min-pose-score", type=float, default=0.8)
    parser.add_argument("--no-pose", action="store_true")
    args = parser.parse_args(argv)
    out = sys.stdout.buffer
    try:
        detect = _detector(args)
        import mediapipe
    except Exception as exc:  # crash guard: the parent reads why the worker could not start
        _reply(out, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _reply(out, {"ready": True, "mediapipe": getattr(mediapipe, "__version__", "?")})
    return _serve(sys.stdin.buffer, out, detect)


def _serve(inp: BinaryIO, out: BinaryIO, detect: Any) -> int:
    import numpy as np

    while True:
        head = inp.read(HEADER.size)
        if not head:
            return 0
        if len(head) != HEADER.size:
            _reply(out, {"error": "short header"})
            return 2
        magic, height, width, aspect = HEADER.unpack(head)
        if magic != MAGIC or not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
            _reply(out, {"error": f"bad header {magic!r} {height}x{width}"})
            return 2
        size = height * width * 3
        data = inp.read(size)
        if len(data) != size:
            _reply(out, {"error": "short frame"})
            return 2
        rgb = np.frombuffer(data, np.uint8).reshape(height, width, 3)
        started = time.perf_counter()
        faces, pose = detect(rgb, aspect)
        _reply(out, {"faces": faces, "pose": pose, "ms": (time.perf_counter() - started) * 1e3})


def _detector(args: argparse.Namespace) -> Any:
    """A function rgb, aspect -> (faces, pose score or None), with its graphs built once."""
    import cv2
    import numpy as np
    from mediapipe.python.solutions import face_detection, pose

    faces = face_detection.FaceDetection(
        model_selection=1 if args.face_model == "full" else 0,
        min_detection_confidence=args.min_face_score,
    )
    body = (
        None
        if args.no_pose
        else pose.Pose(
            static_image_mode=True,  # frames of several cameras interleave: no tracking between calls
            model_complexity=1,
            min_detection_confidence=args.min_pose_score,
        )
    )

    def detect(rgb: Any, aspect: float) -> tuple[list[list[float]], float | None]:
        height, width = rgb.shape[:2]
        if aspect > 0 and abs(width / height - aspect) > 0.02:  # undo the encoder's squash to its input size
            new_w = max(2, round(height * aspect))
            rgb = cv2.resize(rgb, (new_w, height), interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(rgb)
        found = faces.process(rgb).detections or []
        boxes = []
        for d in found:
            box = d.location_data.relative_bounding_box
            boxes.append([box.xmin, box.ymin, box.width, box.height, float(d.score[0])])
        pose_score = None
        if body is not None:
            result = body.process(rgb)
            if result.pose_landmarks is not None:  # the graph does not report its detector's score:
                pose_score = float(args.min_pose_score)  # a body found scores the threshold it passed
        return boxes, pose_score

    return detect


def _reply(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
