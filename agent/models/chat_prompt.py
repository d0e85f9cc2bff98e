"""LLaVA-OneVision chat prompts rendered the way transformers' processor renders them, as token ids: the
checkpoint's own chat template over typed content parts; never a made-up prompt format, and never a control
token taken from user text.

How `LlavaOnevisionProcessor` builds a video prompt (transformers 5.x, `processing_llava_onevision.py`): the
messages carry typed parts (`{"type": "video"}`, `{"type": "text", "text": ...}`), the chat template writes
one `<video>` per video part, and the processor expands that one placeholder to `F * 196 + 1` copies (the
`+ 1` is the `image_newline` row). Here the one placeholder becomes the visual span the answerer hands in
(K memory tokens, optional time markers, the newline row).

Template forms llava-hf checkpoints ship, all handled (`find_chat_template`): a processor `chat_template.json`
(`{"chat_template": "..."}`), a `chat_template.jinja`, and the older string in `tokenizer_config.json`. Which
content shape a template wants (typed parts, or one string per message as in older ChatML templates) is
found by rendering a probe and checking the video placeholder and the text land in it exactly once.

User text: any of the tokenizer's added or special tokens in it (`<video>`, `<image>`, `<|im_end|>`, ...) is
encoded as ordinary text (split until no piece matches a control token), as transformers'
`sanitize_control_tokens` does; other text is tokenized in one piece with the rest of the prompt, so the ids
equal the processor's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.models.base import ModelError

# Private-use characters that bracket a control token found in user text while the template renders.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKED = re.compile(f"{_OPEN}(.*?){_CLOSE}", re.DOTALL)
_PROBE = "scissor probe question"  # rendered once to learn the template's content shape


class ChatTemplateError(ModelError, ValueError):
    """The checkpoint ships no usable chat template, or one that does not place the video where it must."""


@dataclass(frozen=True)
class ChatTemplate:
    """A checkpoint's chat template and the content shape it renders.

    Attributes:
        text: the Jinja source.
        origin: where it came from ("chat_template.json", "chat_template.jinja", "tokenizer_config.json").
        typed: True when messages carry typed parts (processor templates), False for one string per message.
    """

    text: str
    origin: str
    typed: bool


def _read_template_files(source: str, cache_dir: str | None) -> tuple[str, str] | None:
    """(template, file name) from the processor files, in the order transformers' processor reads them."""
    from transformers.utils.hub import cached_file

    for name in ("chat_template.json", "chat_template.jinja"):
        try:
            path = cached_file(source, name, cache_dir=cache_dir, _raise_exceptions_for_missing_entries=False)
        except OSError:  # offline and not cached, or no such repository: the tokenizer's template is next
            path = None
        if not path:
            continue
        text = Path(path).read_text(encoding="utf-8")
        if name.endswith(".json"):
            text = json.loads(text).get("chat_template", "")
        if isinstance(text, str) and text.strip():
            return text, name
    return None


def _tokenizer_template(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the processor renders "default"
        template = template.get("default")
    return template if isinstance(template, str) and template.strip() else None


def find_chat_template(source: str, tokenizer: Any, *, cache_dir: str | None = None) -> ChatTemplate:
    """The checkpoint's chat template: processor files first (as `AutoProcessor` loads them), then the
    tokenizer's own (`tokenizer_config.json` or the `chat_template.jinja` beside it).

    Args:
        source: checkpoint directory or Hugging Face id (read from the local cache when offline).
        tokenizer: its tokenizer (video token, control tokens, template fallback).
        cache_dir: Hugging Face cache directory (None: the default one).

    Raises:
        ChatTemplateError: no template anywhere, or none renders the video placeholder and text once.
    """
    found = _read_template_files(source, cache_dir)
    if found is None:
        text = _tokenizer_template(tokenizer)
        if text is None:
            raise ChatTemplateError(
                f"checkpoint {source!r} ships no chat template (chat_template.json, chat_template.jinja or "
                "tokenizer_config.json 'chat_template'); LLaVA-OneVision checkpoints from llava-hf ship one, "
                "so add the model's own template there rather than guessing a prompt format"
            )
        found = (text, "tokenizer_config.json")
    return classify(found[0], found[1], tokenizer)


def classify(text: str, origin: str, tokenizer: Any) -> ChatTemplate:
    """Learn whether template `text` wants typed parts or string content (a probe renders it both ways).

    Raises:
        ChatTemplateError: neither shape puts exactly one video placeholder and the text in the prompt.
    """
    video = video_token(tokenizer)
    errors = []
    for typed in (True, False):
        try:
            rendered = render(text, tokenizer, system=None, question=_PROBE, typed=typed)
        except ChatTemplateError as exc:
            errors.append(f"{'typed' if typed else 'string'} content: {exc}")
            continue
        if rendered.count(video) == 1 and rendered.count(_PROBE) == 1:
            return ChatTemplate(text=text, origin=origin, typed=typed)
        errors.append(f"{'typed' if typed else 'string'} content renders {rendered.count(video)} {video}")
    raise ChatTemplateError(
        f"the chat template from {origin} places no single {video} before the question ({'; '.join(errors)})"
    )


def video_token(tokenizer: Any) -> str:
    """The tokenizer's video placeholder text (`<video>` unless it names another)."""
    return str(getattr(tokenizer, "video_token", None) or "<video>")


def messages(system: str | None, question: str, *, typed: bool, video: str) -> list[dict[str, Any]]:
    """The conversation a processor renders: [system], user (one video part, then the text).

    String content follows LLaVA's own layout for such templates: the placeholder, a newline, the text.
    """
    out: list[dict[str, Any]] = []
    if typed:
        if system is not None:
            out.append({"role": "system", "content": [{"type": "text", "text": system}]})
        out.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]})
    else:
        if system is not None:
            out.append({"role": "system", "content": system})
        out.append({"role": "user", "content": f"{video}\n{question}"})
    return out


def render(text: str, tokenizer: Any, *, system: str | None, question: str, typed: bool) -> str:
    """The prompt string `text` renders for one question (generation prompt added), as a processor would.

    Raises:
        ChatTemplateError: the template fails to render (a Jinja or type error, named).
    """
    import jinja2

    conversation = messages(system, question, typed=typed, video=video_token(tokenizer))
    try:
        out = tokenizer.apply_chat_template(
            conversation, chat_template=text, tokenize=False, add_generation_prompt=True
        )
    except (jinja2.TemplateError, TypeError, ValueError, KeyError) as exc:
        raise ChatTemplateError(f"{type(exc).__name__}: {exc}") from None
    return str(out)


def control_tokens(tokenizer: Any) -> tuple[str, ...]:
    """Texts the tokenizer turns into one control token: its added and special tokens (not whitespace),
    longest first so a token wins over one it contains."""
    names = {str(t.content) for t in getattr(tokenizer, "added_tokens_decoder", {}).values()}
    names |= {str(t) for t in getattr(tokenizer, "all_special_tokens", [])}
    return tuple(sorted((n for n in names if n and not n.isspace()), key=len, reverse=True))


def mark_control_tokens(text: str, tokens: tuple[str, ...]) -> str:
    """Bracket every control token in user `text` with private-use marks (marks already there are dropped,
    so none can be forged)."""
    text = text.replace(_OPEN, "").replace(_CLOSE, "")
    if not tokens:
        return text
    pattern = re.compile("|".join(map(re.escape, tokens)))
    return pattern.sub(lambda m: f"{_OPEN}{m.group(0)}{_CLOSE}", text)


def _plain_ids(tokenizer: Any, text: str, control_ids: frozenset[int]) -> list[int]:
    """`text` as ordinary-text ids: halved until no piece encodes to a control token."""
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False)
    if len(text) <= 1 or not control_ids.intersection(ids):
        return ids
    half = len(text) // 2
    return _plain_ids(tokenizer, text[:half], control_ids) + _plain_ids(tokenizer, text[half:], control_ids)


def encode_prompt(
    template: ChatTemplate, tokenizer: Any, *, system: str | None, question: str, visual: str
) -> list[int]:
    """Prompt ids: `template` around `question`, the one video placeholder replaced by `visual` (the
    answerer's span of placeholders and markers), control tokens in `question` encoded as plain text.

    Raises:
        ChatTemplateError: the rendered prompt does not hold exactly one video placeholder outside user text.
    """
    tokens = control_tokens(tokenizer)
    rendered = render(
        template.text,
        tokenizer,
        system=system,
        question=mark_control_tokens(question, tokens),
        typed=template.typed,
    )
    pieces = _MARKED.split(rendered.replace(_OPEN + _CLOSE, ""))  # [text, marked, text, marked, ..., text]
    pieces = [p.replace(_OPEN, "").replace(_CLOSE, "") for p in pieces]  # lone marks a filter split off
    video = video_token(tokenizer)
    found = sum(p.count(video) for p in pieces[::2])
    if found != 1:
        raise ChatTemplateError(
            f"the rendered prompt holds {found} {video} placeholders outside the question"
        )
    unk = getattr(tokenizer, "unk_token_id", None)  # plain text may hold unknown pieces: not a control token
    control_ids = frozenset(int(i) for i in tokenizer.convert_tokens_to_ids(list(tokens))) - {unk}
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        if i % 2:  # a control token the user typed: ordinary text
            ids += _plain_ids(tokenizer, piece, control_ids)
        elif piece:
            ids += tokenizer.encode(piece.replace(video, visual, 1), add_special_tokens=False)
    return ids
