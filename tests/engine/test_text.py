"""Text front end: upstream normalisation, tokenisation and sentence splitting."""

import chatterbox_engine as ce
import pytest
from chatterbox_engine.text import EnTokenizer, check_text, make_tokenizer_json, punc_norm, split_sentences


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("hello world", "Hello world."),
        ("Wait... what", "Wait,  what."),  # upstream keeps the double space
        ("a  b\n c", "A b c."),
        ("one; two: three", "One,  two, three."),
        ("“quoted” and ‘single’", "\"quoted\" and 'single'."),
        ("Really?", "Really?"),
        ("dash — here", "Dash - here."),
    ],
)
def test_punc_norm_matches_upstream_rules(raw, normalised):
    assert punc_norm(raw) == normalised


def test_split_sentences_keeps_short_text_whole_and_packs_sentences():
    assert split_sentences("Hello there. How are you?") == ["Hello there. How are you?"]
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    pieces = split_sentences(text, max_chars=120)
    assert len(pieces) > 1
    assert all(len(p) <= 120 for p in pieces)
    assert all(p.endswith(".") for p in pieces)
    assert " ".join(pieces) == text


def test_split_sentences_cuts_an_overlong_sentence_at_commas_then_spaces():
    sentence = ", ".join(["word " * 10] * 10).strip()
    pieces = split_sentences(sentence, max_chars=80)
    assert all(len(p) <= 80 for p in pieces)
    assert "".join(pieces).replace(" ", "").replace(",", "") == sentence.replace(" ", "").replace(",", "")


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", None, 5, "bell\x07char", "x" * 20_001])
def test_check_text_rejects_unspeakable_input(bad):
    with pytest.raises(ce.InvalidTextError):
        check_text(bad)


def test_tokenizer_frames_text_and_names_unsupported_characters():
    tokenizer = EnTokenizer.from_str(make_tokenizer_json())
    ids = tokenizer.text_tokens("The cat.")
    assert ids[0, 0].item() == 255 and ids[0, -1].item() == 0
    assert 2 in ids[0].tolist()  # [SPACE]
    assert 1 not in tokenizer.encode("Café déjà vu, naïve façade… ¿qué?")
    with pytest.raises(ce.InvalidTextError, match="☃"):
        tokenizer.encode("snow ☃ man")
