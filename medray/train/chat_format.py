"""Chat samples -> ChatML token ids and labels, with the loss on assistant turns only.

A sample is `{"messages": [{"role", "content"}], "images": [...]}`; content is
a string or a list of parts (`{"type": "text", "text": ...}`,
`{"type": "image"}`). It is rendered as ChatML with the tokenizer's special
tokens, `<|im_start|>{role}\n{content}<|im_end|>\n` per turn, each image
part becoming `<image>` repeated `image_tokens` times (the vision encoder's
tokens per image, which the VLM overwrites with image features). In string
content, `<image>` marks an image (the LLaVA convention); every other
special-token string typed in content stays literal text, so a document
that quotes `<|im_end|>` cannot end a turn.

Labels are the input ids on the trained tokens and -100 elsewhere (aligned
with `input_ids`: the model shifts them). Trained are the content of every
assistant turn (or only the last, `train_on: last_assistant`) and the
`<|im_end|>` closing it, so the model learns to stop; the
`<|im_start|>assistant\n` header, the newline after `<|im_end|>`, system
and user turns and image placeholders are never trained.

Why tokenise by pieces: the header, each text part and the footer are
encoded separately and concatenated. Encoding the rendered string at once
lets BPE merge across a boundary (the header's newline with the first
content bytes), so which tokens "belong" to the assistant would depend on
the merges; by pieces the boundary is exact for any tokenizer, and a
prompt built by `prompt_ids` for generation is token-for-token the prefix
the model was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from medray.data.tokenizer import IM_END_TOKEN, IM_START_TOKEN, IMAGE_TOKEN
from medray.errors import ConfigError, MedrayError

ROLES = ("system", "user", "assistant")
TRAIN_ON = ("all_assistant", "last_assistant")
OVERFLOW = ("drop", "truncate")
IGNORE_INDEX = -100

# Reasons a sample is rejected (the `reason` column of a rejects table).
REASONS = ("bad_json", "bad_messages", "unknown_role", "bad_content", "no_assistant_turn", "empty_assistant",
           "image_count_mismatch", "bad_image_ref", "bad_image", "too_long")


class SampleError(MedrayError):
    """A sample that cannot become a training example; `reason` is what a rejects table records."""

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


@dataclass
class ChatFormatConfig:
    max_len: int = 2048  # tokens per sample, image placeholders included
    overflow: str = "drop"  # a longer sample: "drop" (reason too_long) or "truncate" (keep the first whole turns)
    train_on: str = "all_assistant"  # or "last_assistant"
    image_tokens: int = 1  # placeholder tokens per image: the vision encoder's tokens per image
    system_prompt: Optional[str] = None  # noqa: UP045  (prepended to samples that have no system turn)

    def validate(self, prefix: str = "chat") -> ChatFormatConfig:
        if self.max_len < 2:
            raise ConfigError(f"{prefix}.max_len", f"must be at least 2, got {self.max_len}")
        if self.overflow not in OVERFLOW:
            raise ConfigError(f"{prefix}.overflow", f"{self.overflow!r}: expected one of {', '.join(OVERFLOW)}")
        if self.train_on not in TRAIN_ON:
            raise ConfigError(f"{prefix}.train_on", f"{self.train_on!r}: expected one of {', '.join(TRAIN_ON)}")
        if self.image_tokens < 1:
            raise ConfigError(f"{prefix}.image_tokens", f"must be at least 1, got {self.image_tokens}")
        return self


IMAGE = None  # an image part among a turn's parts (text parts are strings)


@dataclass(frozen=True)
class Turn:
    role: str
    parts: tuple  # str for a text part, IMAGE for an image part

    @property
    def n_images(self) -> int:
        return sum(p is IMAGE for p in self.parts)


def _parts(content, index: int) -> tuple:
    if isinstance(content, str):
        pieces = content.split(IMAGE_TOKEN)
        parts: list = []
        for i, piece in enumerate(pieces):
            if i:
                parts.append(IMAGE)
            if piece:
                parts.append(piece)
        return tuple(parts)
    if not isinstance(content, (list, tuple)):
        raise SampleError("bad_content", f"message {index}: content is {type(content).__name__}, not a string or list of parts")
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image":
            parts.append(IMAGE)
        elif kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                parts.append(part["text"])
        else:
            raise SampleError("bad_content", f"message {index}: a part must be {{'type': 'text', 'text': str}} "
                                             f"or {{'type': 'image'}}, got {part!r:.80}")
    return tuple(parts)


def normalize_messages(messages, system_prompt: str | None = None) -> list[Turn]:
    """Messages as turns; raises SampleError on a malformed list, an unknown role or no assistant turn."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise SampleError("bad_messages", f"messages must be a non-empty list, got {type(messages).__name__}")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise SampleError("bad_messages", f"message {i} is not {{'role', 'content'}}: {message!r:.80}")
        role = message["role"]
        if role not in ROLES:
            raise SampleError("unknown_role", f"message {i}: role {role!r} (expected one of {', '.join(ROLES)})")
        turns.append(Turn(role, _parts(message["content"], i)))
    for i, turn in enumerate(turns):
        if turn.role == "assistant" and turn.n_images:
            raise SampleError("bad_content", f"message {i}: an assistant turn cannot hold an image")
    if not any(t.role == "assistant" for t in turns):
        raise SampleError("no_assistant_turn", f"{len(turns)} messages, none from the assistant")
    if system_prompt and turns[0].role != "system":
        turns.insert(0, Turn("system", (system_prompt,)))
    return turns


def render_chatml(messages, *, image_tokens: int = 1, add_generation_prompt: bool = False) -> str:
    """The ChatML text of `messages` (for reading and prompts; training ids come from `ChatEncoder`)."""
    out = []
    for turn in normalize_messages(messages) if not add_generation_prompt else _prompt_turns(messages):
        body = "".join(IMAGE_TOKEN * image_tokens if p is IMAGE else p for p in turn.parts)
        out.append(f"{IM_START_TOKEN}{turn.role}\n{body}{IM_END_TOKEN}\n")
    if add_generation_prompt:
        out.append(f"{IM_START_TOKEN}assistant\n")
    return "".join(out)


def _prompt_turns(messages) -> list[Turn]:
    """Turns of a prompt: like a training sample but with no assistant turn required."""
    if not isinstance(messages, (list, tuple)):
        raise SampleError("bad_messages", f"messages must be a list, got {type(messages).__name__}")
    return normalize_messages([*messages, {"role": "assistant", "content": ""}])[:-1]


@dataclass
class EncodedChat:
    input_ids: list[int]
    labels: list[int]
    n_images: int  # images kept (those of dropped turns are gone with them)
    truncated_turns: int = 0  # messages dropped from the end to fit max_len

    @property
    def num_loss_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


class ChatEncoder:
    """Encodes chat samples with a `transformers` fast tokenizer that has the ChatML and image tokens."""

    def __init__(self, tokenizer, config: ChatFormatConfig | None = None):
        from tokenizers import Tokenizer

        self.config = (config or ChatFormatConfig()).validate()
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (IM_START_TOKEN, IM_END_TOKEN, IMAGE_TOKEN)}
        unknown = tokenizer.unk_token_id
        missing = [t for t, i in ids.items() if i is None or (unknown is not None and i == unknown)]
        if missing:
            raise MedrayError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} lacks {', '.join(missing)}: "
                              "train it with `medray tokenizer train` (it adds the chat and image tokens)")
        self.im_start_id, self.im_end_id, self.image_id = ids[IM_START_TOKEN], ids[IM_END_TOKEN], ids[IMAGE_TOKEN]
        # A private copy of the backend: special-token strings in content are encoded as text.
        self.backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self.backend.no_truncation()
        self.backend.no_padding()
        self.backend.encode_special_tokens = True
        self.headers = {role: [self.im_start_id, *self._encode([f"{role}\n"])[0]] for role in ROLES}
        self.footer = [self.im_end_id, *self._encode(["\n"])[0]]

    @classmethod
    def from_path(cls, path: str, config: ChatFormatConfig | None = None) -> ChatEncoder:
        from medray.data.tokenizer import load_tokenizer

        return cls(load_tokenizer(path), config)

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [e.ids for e in self.backend.encode_batch_fast(list(texts), add_special_tokens=False)]

    def encode(self, sample: dict) -> EncodedChat:
        """One sample's ids and labels; raises SampleError (a MedrayError) naming what is wrong."""
        result = self.encode_many([sample])[0]
        if isinstance(result, SampleError):
            raise result
        return result

    def encode_many(self, samples: Sequence[dict]) -> list[EncodedChat | SampleError]:
        """Each sample's encoding, or the SampleError it is rejected with; text parts go to one batch encode."""
        turns_of: list[list[Turn] | SampleError] = []
        texts: list[str] = []
        for sample in samples:
            try:
                turns = self.turns(sample)
            except SampleError as err:
                turns_of.append(err)
                continue
            turns_of.append(turns)
            texts.extend(p for t in turns for p in t.parts if p is not IMAGE)
        encoded = iter(self._encode(texts))
        out: list[EncodedChat | SampleError] = []
        for turns in turns_of:
            if isinstance(turns, SampleError):
                out.append(turns)
                continue
            pieces = [[next(encoded) if p is not IMAGE else IMAGE for p in t.parts] for t in turns]
            try:
                out.append(self._assemble(turns, pieces))
            except SampleError as err:
                out.append(err)
        return out

    def turns(self, sample: dict) -> list[Turn]:
        """The sample's turns, checked against its images."""
        if not isinstance(sample, dict):
            raise SampleError("bad_messages", f"a sample is a JSON object, got {type(sample).__name__}")
        turns = normalize_messages(sample.get("messages"), self.config.system_prompt)
        images = sample.get("images") or []
        if not isinstance(images, (list, tuple)):
            raise SampleError("bad_image_ref", f"images must be a list, got {type(images).__name__}")
        n_parts = sum(t.n_images for t in turns)
        if n_parts != len(images):
            raise SampleError("image_count_mismatch", f"{n_parts} image parts in the messages, {len(images)} images")
        return turns

    def _turn_ids(self, turn: Turn, pieces: list, trained: bool) -> tuple[list[int], list[int]]:
        header = self.headers[turn.role]
        ids, labels = list(header), [IGNORE_INDEX] * len(header)
        for piece in pieces:
            if piece is IMAGE:
                ids += [self.image_id] * self.config.image_tokens
                labels += [IGNORE_INDEX] * self.config.image_tokens
            else:
                ids += piece
                labels += piece if trained else [IGNORE_INDEX] * len(piece)
        ids += self.footer
        labels += [self.im_end_id if trained else IGNORE_INDEX] + [IGNORE_INDEX] * (len(self.footer) - 1)
        return ids, labels

    def _assemble(self, turns: list[Turn], pieces: list[list]) -> EncodedChat:
        cfg = self.config
        lengths = [len(self.headers[t.role]) + len(self.footer)
                   + sum(cfg.image_tokens if p is IMAGE else len(p) for p in ps) for t, ps in zip(turns, pieces)]
        total = sum(lengths)
        keep = len(turns)
        if total > cfg.max_len:
            if cfg.overflow == "drop":
                raise SampleError("too_long", f"{total} tokens > max_len {cfg.max_len}")
            keep = self._fitting_prefix(turns, lengths)
        kept = turns[:keep]
        assistant = [i for i, t in enumerate(kept) if t.role == "assistant"]
        trained = set(assistant if cfg.train_on == "all_assistant" else assistant[-1:])
        empty = [i for i in sorted(trained) if not any(p is not IMAGE and p for p in pieces[i])]
        if empty:
            raise SampleError("empty_assistant", f"message {empty[0]}: a trained assistant turn has no text")
        ids: list[int] = []
        labels: list[int] = []
        for i in range(keep):
            turn_ids, turn_labels = self._turn_ids(kept[i], pieces[i], i in trained)
            ids += turn_ids
            labels += turn_labels
        return EncodedChat(ids, labels, sum(t.n_images for t in kept), len(turns) - keep)

    def _fitting_prefix(self, turns: list[Turn], lengths: list[int]) -> int:
        """The most leading turns that fit max_len and end with an assistant turn."""
        best, used = 0, 0
        for i, (turn, length) in enumerate(zip(turns, lengths)):
            used += length
            if used > self.config.max_len:
                break
            if turn.role == "assistant":
                best = i + 1
        if not best:
            first = next(i for i, t in enumerate(turns) if t.role == "assistant")
            need = sum(lengths[: first + 1])
            raise SampleError("too_long", f"the first assistant turn ends at token {need} > max_len {self.config.max_len}")
        return best

    def prompt_ids(self, messages) -> list[int]:
        """Ids of a prompt for generation: the turns, then `<|im_start|>assistant\\n`, encoded as in training."""
        turns = _prompt_turns(messages)
        if self.config.system_prompt and (not turns or turns[0].role != "system"):
            turns.insert(0, Turn("system", (self.config.system_prompt,)))
        texts = [p for t in turns for p in t.parts if p is not IMAGE]
        encoded = iter(self._encode(texts))
        ids: list[int] = []
        for turn in turns:
            ids += self._turn_ids(turn, [next(encoded) if p is not IMAGE else IMAGE for p in turn.parts], False)[0]
        return ids + self.headers["assistant"]
