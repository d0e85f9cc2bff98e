"""Frame preprocessing for encoders (resize + mean/std): numpy/torch only, never torchvision and never I/O."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


class FrameError(ValueError):
    """A frame handed to an encoder is not an H x W x 3 uint8 image."""


def check_frames(frames: Sequence[np.ndarray]) -> None:
    """Raise `FrameError` unless every frame is a non-empty `uint8[H, W, 3]` array.

    Args:
        frames: RGB frames.
    """
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
            shape = getattr(frame, "shape", type(frame).__name__)
            raise FrameError(f"frame {i} must be an H x W x 3 RGB array, got {shape}")
        if frame.dtype != np.uint8:
            raise FrameError(f"frame {i} must be uint8, got {frame.dtype}")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise FrameError(f"frame {i} is empty: {frame.shape}")


def to_pixels(
    frames: Sequence[np.ndarray],
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Resize RGB frames to `size` and normalise them with the checkpoint's mean and std.

    Frames already at `size` (the streamer resizes at decode) skip the resize. Other frames are squashed to
    `size` with antialiased bilinear interpolation (cameras are not cropped: an object at the edge matters).

    Args:
        frames: F RGB frames, each `uint8[H, W, 3]` (sizes may differ).
        size: (width, height) the encoder wants.
        mean: per-channel mean in [0, 1] units.
        std: per-channel standard deviation in [0, 1] units.
        device: where the pixels go.
        dtype: pixel dtype (the model's).

    Returns:
        `Tensor[F, 3, height, width]` of normalised pixels.

    Raises:
        FrameError: when a frame is not `uint8[H, W, 3]` or no frame is given.
    """
    if len(frames) == 0:
        raise FrameError("no frames to encode")
    check_frames(frames)
    width, height = size
    batch = []
    for frame in frames:
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)  # [3, H, W] uint8
        x = x.to(torch.float32).div_(255.0)
        if x.shape[1] != height or x.shape[2] != width:
            x = torch.nn.functional.interpolate(
                x[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False
            )[0].clamp_(0.0, 1.0)
        batch.append(x)
    pixels = torch.stack(batch)  # [F, 3, height, width]
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)
    return ((pixels - m) / s).to(device=device, dtype=dtype)


def pick_device(device: str) -> torch.device:
    """Resolve a device setting: "auto" means CUDA when present, else CPU.

    Args:
        device: "auto", "cpu", "cuda", "cuda:1", ...

    Returns:
        The torch device.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """Resolve a dtype setting: None or "auto" means float16 on CUDA and float32 on CPU.

    Args:
        dtype: None, "auto", "float32", "float16" or "bfloat16".
        device: the device the model runs on.

    Returns:
        The torch dtype.

    Raises:
        ValueError: for any other name.
    """
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, got {dtype!r}")
    return table[dtype]
