"""ChatML ids and labels: the loss lands exactly on assistant content and its <|im_end|>, checked token by token."""

from __future__ import annotations

import pytest

from medray.data.tokenizer import EOS_TOKEN, PAD_TOKEN, load_tokenizer, train_tokenizer
from medray.errors import ConfigError, MedrayError
from medray.train.chat_format import (
    IGNORE_INDEX,
    ChatEncoder,
    ChatFormatConfig,
    SampleError,
    render_chatml,
)

CORPUS = [
    "The chest radiograph shows a small left pleural effusion without pneumothorax.",
    "Patient presents with fever and productive cough; consolidation in the right lower lobe suggests pneumonia.",
    "What is seen on this image? Is there cardiomegaly or a pleural effusion?",
    "No acute cardiopulmonary process. Heart size is normal. Lungs are clear.",
]
N_IMAGE_TOKENS = 3
IM_START, IM_END, IMAGE = 2, 3, 4


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="module")
def encoder(tokenizer) -> ChatEncoder:
    return ChatEncoder(tokenizer, ChatFormatConfig(image_tokens=N_IMAGE_TOKENS))


def multi_turn() -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You are a careful radiologist."},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is seen on this image?"}]},
            {"role": "assistant", "content": "A small left pleural effusion."},
            {"role": "user", "content": "Is there pneumothorax?"},
            {"role": "assistant", "content": "No pneumothorax. Heart size is normal."},
        ],
        "images": ["scan.png"],
    }


def turns_of(ids: list[int], labels: list[int]) -> list[tuple[list[int], list[int]]]:
    """Split a sequence at every <|im_start|>: (ids, labels) per turn, in order."""
    starts = [i for i, t in enumerate(ids) if t == IM_START] + [len(ids)]
    return [(ids[a:b], labels[a:b]) for a, b in zip(starts, starts[1:])]


def test_labels_are_exactly_the_assistant_contents_and_their_im_end(tokenizer, encoder):
    encoded = encoder.encode(multi_turn())
    ids, labels = encoded.input_ids, encoded.labels
    assert len(ids) == len(labels)
    assert ids[0] == IM_START
    # Every trained label is the input id at its position (the model shifts them itself).
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(ids, labels))
    trained = [t for t, label in zip(ids, labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(trained, skip_special_tokens=False) == (
        "A small left pleural effusion.<|im_end|>No pneumothorax. Heart size is normal.<|im_end|>")
    assert trained.count(IM_END) == 2
    roles = []
    for turn_ids, turn_labels in turns_of(ids, labels):
        text = tokenizer.decode(turn_ids, skip_special_tokens=False)
        role = text[len("<|im_start|>"):].split("\n", 1)[0]
        roles.append(role)
        header = encoder.headers[role]
        assert turn_ids[: len(header)] == header
        assert turn_labels[: len(header)] == [IGNORE_INDEX] * len(header)  # the header is never trained
        assert turn_ids[-2:] == [IM_END, encoder.footer[1]] and turn_labels[-1] == IGNORE_INDEX  # the newline after
        if role == "assistant":
            content = turn_ids[len(header):-2]
            assert turn_labels[len(header):-1] == content + [IM_END]
        else:
            assert set(turn_labels) == {IGNORE_INDEX}
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert encoded.num_loss_tokens == len(trained)


def test_image_placeholders_are_n_untrained_tokens_where_the_image_part_is(tokenizer, encoder):
    encoded = encoder.encode(multi_turn())
    ids, labels = encoded.input_ids, encoded.labels
    positions = [i for i, t in enumerate(ids) if t == IMAGE]
    assert len(positions) == N_IMAGE_TOKENS and positions == list(range(positions[0], positions[0] + N_IMAGE_TOKENS))
    assert all(labels[i] == IGNORE_INDEX for i in positions)
    before = tokenizer.decode(ids[: positions[0]], skip_special_tokens=False)
    after = tokenizer.decode(ids[positions[-1] + 1:], skip_special_tokens=False)
    assert before.endswith("<|im_end|>\n<|im_start|>user\n")
    assert after.startswith("What is seen on this image?<|im_end|>")
    assert encoded.n_images == 1
    # Two images, the first inside a string (the LLaVA convention): two runs of N each.
    sample = {"messages": [{"role": "user", "content": "<image>\nCompare with [{'x'}]"},
                           {"role": "user", "content": [{"type": "text", "text": "and"}, {"type": "image"}]},
                           {"role": "assistant", "content": "Stable."}], "images": ["a.png", "b.png"]}
    ids = encoder.encode(sample).input_ids
    runs = "".join("I" if t == IMAGE else "." for t in ids).split(".")
    assert [len(r) for r in runs if r] == [N_IMAGE_TOKENS, N_IMAGE_TOKENS]


def test_the_rendered_text_is_chatml_and_the_ids_decode_to_it(tokenizer, encoder):
    sample = multi_turn()
    text = render_chatml(sample["messages"], image_tokens=N_IMAGE_TOKENS)
    assert text.startswith("<|im_start|>system\nYou are a careful radiologist.<|im_end|>\n<|im_start|>user\n<image><image><image>What")
    assert text.endswith("<|im_start|>assistant\nNo pneumothorax. Heart size is normal.<|im_end|>\n")
    assert tokenizer.decode(encoder.encode(sample).input_ids, skip_special_tokens=False) == text


def test_pieces_are_tokenised_alone_so_content_ids_do_not_depend_on_the_header(tokenizer, encoder):
    content = "No acute cardiopulmonary process."
    ids = encoder.encode({"messages": [{"role": "user", "content": "Findings?"},
                                       {"role": "assistant", "content": content}]}).input_ids
    alone = tokenizer(content, add_special_tokens=False)["input_ids"]
    header = encoder.headers["assistant"]
    start = len(ids) - len(encoder.footer) - len(alone)
    assert ids[start - len(header): start] == header and ids[start: start + len(alone)] == alone


def test_generation_prompt_is_the_exact_prefix_of_training_ids(encoder):
    sample = multi_turn()
    full = encoder.encode(sample).input_ids
    prompt = encoder.prompt_ids(sample["messages"][:2])
    assert full[: len(prompt)] == prompt
    assert prompt[-len(encoder.headers["assistant"]):] == encoder.headers["assistant"]


def test_special_token_strings_in_content_are_text(tokenizer, encoder):
    sample = {"messages": [{"role": "user", "content": "Quote: <|im_end|> and <|endoftext|>"},
                           {"role": "assistant", "content": "Noted."}]}
    ids = encoder.encode(sample).input_ids
    assert ids.count(IM_END) == 2 and ids.count(IM_START) == 2 and 0 not in ids
    assert "Quote: <|im_end|> and <|endoftext|>" in tokenizer.decode(ids, skip_special_tokens=False)


def test_last_assistant_trains_only_the_final_turn(tokenizer):
    encoder = ChatEncoder(tokenizer, ChatFormatConfig(image_tokens=N_IMAGE_TOKENS, train_on="last_assistant"))
    encoded = encoder.encode(multi_turn())
    trained = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(trained, skip_special_tokens=False) == "No pneumothorax. Heart size is normal.<|im_end|>"


def test_system_prompt_is_added_only_where_a_sample_has_none(tokenizer):
    encoder = ChatEncoder(tokenizer, ChatFormatConfig(system_prompt="Answer briefly."))
    plain = {"messages": [{"role": "user", "content": "Findings?"}, {"role": "assistant", "content": "Clear."}]}
    text = tokenizer.decode(encoder.encode(plain).input_ids, skip_special_tokens=False)
    assert text.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\n")
    own = encoder.encode(multi_turn()).input_ids
    assert tokenizer.decode(own, skip_special_tokens=False).count("<|im_start|>system") == 1


def test_too_long_is_dropped_or_truncated_to_whole_turns_never_silently(tokenizer):
    sample = multi_turn()
    full = ChatEncoder(tokenizer, ChatFormatConfig(image_tokens=N_IMAGE_TOKENS)).encode(sample)
    first_three = ChatEncoder(tokenizer, ChatFormatConfig(image_tokens=N_IMAGE_TOKENS)).encode(
        {"messages": sample["messages"][:3], "images": sample["images"]})
    limit = len(full.input_ids) - 1
    with pytest.raises(SampleError) as err:
        ChatEncoder(tokenizer, ChatFormatConfig(image_tokens=N_IMAGE_TOKENS, max_len=limit)).encode(sample)
    assert err.value.reason == "too_long" and str(len(full.input_ids)) in err.value.detail
    cut = ChatEncoder(tokenizer, ChatFormatConfig(image_tokens=N_IMAGE_TOKENS, max_len=limit, overflow="truncate")).encode(sample)
    assert cut.truncated_turns == 2 and cut.n_images == 1
    assert cut.input_ids == first_three.input_ids and cut.labels == first_three.labels
    tiny = ChatEncoder(tokenizer, ChatFormatConfig(image_tokens=N_IMAGE_TOKENS, max_len=10, overflow="truncate"))
    with pytest.raises(SampleError, match="first assistant turn"):
        tiny.encode(sample)


@pytest.mark.parametrize(("sample", "reason"), [
    ({"messages": [{"role": "doctor", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}, "unknown_role"),
    ({"messages": [{"role": "user", "content": "Hi"}]}, "no_assistant_turn"),
    ({"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "image"}]},
                   {"role": "assistant", "content": "Two views."}], "images": ["a.png"]}, "image_count_mismatch"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi"}], "images": ["a.png"]},
     "image_count_mismatch"),
    ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "Hi"}]}, "bad_content"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}, {"role": "assistant", "content": "Hi"}]}, "bad_content"),
    ({"messages": "hello"}, "bad_messages"),
    ({"messages": [{"role": "user"}]}, "bad_messages"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]}, "empty_assistant"),
])
def test_malformed_samples_raise_a_medray_error_with_a_reason(encoder, sample, reason):
    with pytest.raises(MedrayError) as err:
        encoder.encode(sample)
    assert isinstance(err.value, SampleError) and err.value.reason == reason
    # In a batch the same problem is a value, not an exception, and the good samples still encode.
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    results = encoder.encode_many([sample, good])
    assert isinstance(results[0], SampleError) and results[0].reason == reason
    assert results[1].input_ids == encoder.encode(good).input_ids


@pytest.mark.parametrize(("field", "value", "key"), [
    ("max_len", 1, "chat.max_len"), ("overflow", "wrap", "chat.overflow"),
    ("train_on", "everything", "chat.train_on"), ("image_tokens", 0, "chat.image_tokens"),
])
def test_bad_config_names_the_key(field, value, key):
    with pytest.raises(ConfigError) as err:
        ChatFormatConfig(**{field: value}).validate()
    assert err.value.key == key


def test_a_tokenizer_without_the_chat_tokens_is_refused(tmp_path):
    out = tmp_path / "plain"
    train_tokenizer(iter(CORPUS * 10), 300, str(out), min_frequency=1, special_tokens=(EOS_TOKEN, PAD_TOKEN))
    with pytest.raises(MedrayError, match="lacks <\\|im_start\\|>"):
        ChatEncoder(load_tokenizer(str(out)))
