"""A seeded tiny LLaVA-OneVision (small SigLIP + small Qwen2) with an offline tokenizer, saved to a directory
and loaded by path through llava_onevision.py; never downloads anything and holds no model code of its own.

Same token geometry as the real 0.5B model (384 px, patch 14 -> 27 x 27 -> bilinear 14 x 14 = 196 tokens per
frame); only widths and depths are tiny, so its answers are gibberish but deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_SEED = 0
TINY_IMAGE_PX = 384
TINY_D = 64
VOCAB_SIZE = 128
IMAGE_TOKEN_ID = 126
VIDEO_TOKEN_ID = 127
_SPECIAL = ["[UNK]", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_WORDS = """
system user assistant you watch a camera visual tokens from its memory follow with stream times what
when where who how long did was were is are there see seen saw last first in on at of the cat dog
car bird person people truck animal minutes minute seconds second ago now yes no it this that t s =
? . , : ! 0 1 2 3 4 5 6 7 8 9 and or not any many some red blue green white black moving door street
room outside inside left right up down near far big small one two three time
""".split()  # noqa: SIM905 (a word list reads better as text)
# ChatML, as Qwen2 checkpoints use.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _vocab() -> dict[str, int]:
    words = list(dict.fromkeys(_SPECIAL + _WORDS))
    filler = [f"w{i}" for i in range(IMAGE_TOKEN_ID - len(words))]
    vocab = {w: i for i, w in enumerate(words + filler)}
    if len(vocab) != IMAGE_TOKEN_ID:
        raise RuntimeError(f"tiny vocabulary has {len(vocab)} words, expected {IMAGE_TOKEN_ID}")
    vocab["<image>"] = IMAGE_TOKEN_ID
    vocab["<video>"] = VIDEO_TOKEN_ID
    return vocab


def build_tokenizer() -> object:
    """An offline WordLevel tokenizer (128 ids) with `<image>`=126, `<video>`=127 and a ChatML template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(_vocab(), unk_token="[UNK]"))
    # Split words, punctuation ("t=12s" -> t = 1 2 s) and single digits.
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(True)])
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tk,
        unk_token="[UNK]",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<image>", "<video>", "<|im_start|>", "<|im_end|>"],
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(seed: int = TINY_SEED) -> object:
    """The tiny LlavaOnevisionForConditionalGeneration, initialised from `seed` (eval mode)."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=TINY_IMAGE_PX, patch_size=14, vision_use_head=False,
    )  # fmt: skip
    text = Qwen2Config(
        vocab_size=VOCAB_SIZE, hidden_size=TINY_D, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
        eos_token_id=3, pad_token_id=1, bos_token_id=None, tie_word_embeddings=False,
    )  # fmt: skip
    cfg = LlavaOnevisionConfig(
        vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN_ID,
        video_token_index=VIDEO_TOKEN_ID, vision_feature_layer=-1, vision_feature_select_strategy="full",
    )  # fmt: skip
    torch.manual_seed(seed)
    return LlavaOnevisionForConditionalGeneration(cfg).eval()  # type: ignore[no-untyped-call]


def save_tiny(directory: str | Path, seed: int = TINY_SEED) -> Path:
    """Write the tiny checkpoint (config, weights, tokenizer, preprocessor config) into `directory`.

    Args:
        directory: target directory (created if missing).
        seed: torch seed for the random weights.

    Returns:
        The directory, loadable with `load_backend(str(path))` or `load_backend("llava_onevision:" + path)`.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model = build_model(seed)
    model.generation_config.eos_token_id = 3  # type: ignore[attr-defined]
    model.generation_config.pad_token_id = 1  # type: ignore[attr-defined]
    model.save_pretrained(path)  # type: ignore[attr-defined]
    build_tokenizer().save_pretrained(path)  # type: ignore[attr-defined]
    pre = {
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "size": {"height": TINY_IMAGE_PX, "width": TINY_IMAGE_PX},
    }
    (path / "preprocessor_config.json").write_text(json.dumps(pre, indent=2), encoding="utf-8")
    return path
