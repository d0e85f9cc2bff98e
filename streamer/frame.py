"""The record the ingest stage produces: one sampled, decoded RGB frame; never holds codec or socket state."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One decoded frame handed from a camera to its consumer.

    Attributes:
        camera_id: the camera it came from.
        index: 0, 1, 2, ... per source, increasing by one per frame put in the queue (dropped frames still
            used their index, so gaps in what a consumer sees are drops), monotonic across reconnects.
        pts_s: seconds on the source's own timeline, from presentation timestamps: 0 at the first frame,
            strictly increasing, and continued across reconnects and file loops (a reconnect gap is bridged
            with the wall time that passed).
        wall_time: `time.time()` when the frame was decoded.
        rgb: pixels, uint8 [H, W, 3] in RGB order, C-contiguous.
        source_aspect: width / height of the picture as the camera sent it (a model's square input squashes
            it; keyframes for people restore it), counting the stream's sample aspect ratio; None if unknown.
    """

    camera_id: str
    index: int
    pts_s: float
    wall_time: float
    rgb: npt.NDArray[np.uint8]
    source_aspect: float | None = None

    @property
    def height(self) -> int:
        """Rows of `rgb`."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """Columns of `rgb`."""
        return int(self.rgb.shape[1])
