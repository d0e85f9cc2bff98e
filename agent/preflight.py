"""What `scissor serve` can tell is wrong before torch and transformers load (10-30 s on a busy box): a model
id that offline mode cannot reach. Reads the Hugging Face cache index only; never loads or downloads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from agent.settings import KNOWN_BACKENDS

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # as agent.models reads an "org/name" id
OFFLINE_WORDS = frozenset({"1", "true", "yes", "on"})


def missing_offline_weights(backend: str) -> str | None:
    """Why `backend` (SCISSOR_BACKEND) cannot load, when that is knowable now: HF_HUB_OFFLINE is set and the
    hub id it names is not in the local cache. None when it may load (names, directories, online mode, the
    default LLaVA id the loader resolves itself)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in OFFLINE_WORDS:
        return None
    model_id = backend.partition(":")[2] if backend.startswith("llava_onevision:") else backend
    if model_id in KNOWN_BACKENDS or Path(model_id).expanduser().exists() or not HUB_ID.fullmatch(model_id):
        return None
    from huggingface_hub import try_to_load_from_cache  # ~1 s to import, against torch's 10-30 s

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return None
    return (
        f"model {model_id!r} (SCISSOR_BACKEND) is not in the Hugging Face cache and HF_HUB_OFFLINE is set: "
        f"download it beforehand (huggingface-cli download {model_id}) or give a local directory"
    )
