"""Upstream main's newer models on tiny random weights: Nano (Turbo with GPT-2 small), Multilingual V3
(new T3 file, repetition penalty 1.2, the last token's audio dropped) and Turbo/Nano paralinguistic tags."""

from __future__ import annotations

import chatterbox_engine as ce
import pytest
from chatterbox_engine.errors import CheckpointError
from chatterbox_engine.text import PARALINGUISTIC_TAGS, drop_tags, punc_norm, split_sentences
from chatterbox_engine.variants import SPECS, select_variant, variant_for_repo


@pytest.fixture(scope="module")
def nano_engine() -> ce.Engine:
    return ce.load("random:tiny-nano", watermark=False)


@pytest.fixture(scope="module")
def v3_engine() -> ce.Engine:
    return ce.load("random:tiny-multilingual-v3", watermark=False)


@pytest.fixture(scope="module")
def nano_checkpoint(tmp_path_factory, nano_engine):
    folder = tmp_path_factory.mktemp("nano")
    nano_engine.save_checkpoint(folder)
    return folder


@pytest.fixture(scope="module")
def v3_checkpoint(tmp_path_factory, v3_engine):
    folder = tmp_path_factory.mktemp("mtl_v3")
    v3_engine.save_checkpoint(folder)
    return folder


def test_nano_is_turbo_with_its_own_t3_file(nano_engine, nano_checkpoint):
    assert nano_engine.info["variant"] == "nano" and nano_engine.info["version"] is None
    assert set(nano_engine.ignored_parameters) == set(SPECS["turbo"].ignored_parameters)
    assert nano_engine.spec.sampling == SPECS["turbo"].sampling  # top_p 0.95, penalty 1.2
    names = {p.name for p in nano_checkpoint.iterdir()}
    assert "t3_nano_v1.safetensors" in names and "t3_turbo_v1.safetensors" not in names
    assert "s3gen_meanflow.safetensors" in names and "vocab.json" in names
    # Detected from its files, and the reload speaks the same tokens.
    reloaded = ce.load(str(nano_checkpoint), watermark=False)
    assert reloaded.variant == "nano"
    request = dict(seed=2, max_new_tokens=20)
    assert (
        reloaded.generate("Hi there.", **request).num_tokens
        == nano_engine.generate("Hi there.", **request).num_tokens
    )
    with pytest.raises(CheckpointError, match="has no turbo model"):
        ce.load(str(nano_checkpoint), variant="turbo")


def test_full_nano_has_the_gpt2_small_shapes():
    config = SPECS["nano"].t3_config(tiny=False)
    assert (config.hidden_size, config.num_layers, config.num_heads) == (768, 12, 12)
    assert SPECS["turbo"].t3_config(tiny=False).num_layers == 24


def test_hub_repos_pick_their_variant():
    assert variant_for_repo("ResembleAI/chatterbox-nano", None) == "nano"
    assert variant_for_repo("ResembleAI/chatterbox-turbo", None) == "turbo"
    assert variant_for_repo("ResembleAI/chatterbox", None) == "english"


def test_version_selects_the_multilingual_release():
    assert select_variant("multilingual", "v3") == "multilingual-v3"
    assert select_variant("multilingual", "v2") == "multilingual"
    assert select_variant("multilingual", None) == "multilingual"
    assert select_variant(None, "v3") == "multilingual-v3"
    with pytest.raises(CheckpointError, match="only multilingual takes a version"):
        select_variant("nano", "v3")
    with pytest.raises(CheckpointError, match="unknown multilingual version 'v9'"):
        select_variant("multilingual", "v9")


def test_v3_defaults_differ_from_v2_as_upstream_main(v3_engine):
    assert v3_engine.info["variant"] == "multilingual" and v3_engine.info["version"] == "v3"
    assert v3_engine.request("Hola.", language="es").sampling.repetition_penalty == 1.2
    assert SPECS["multilingual"].sampling.repetition_penalty == 2.0  # v2 keeps 0.1.7's
    assert (
        v3_engine.supported_languages
        == ce.load("random:tiny-multilingual", watermark=False).supported_languages
    )


def test_v3_drops_the_last_tokens_audio_one_shot_and_streamed(v3_engine):
    request = v3_engine.request("Bonjour à tous.", language="fr", seed=4, max_new_tokens=30)
    result = v3_engine.generate(request)
    assert result.num_tokens > 1
    assert result.audio.size == (result.num_tokens - 1) * 960
    chunks = list(v3_engine.generate_stream(request, chunk_tokens=6))
    assert sum(chunk.audio.size for chunk in chunks) == result.audio.size
    assert chunks[-1].is_last and chunks[-1].num_tokens == result.num_tokens


def test_a_folder_with_both_multilingual_files_defaults_to_v2(v3_checkpoint, tmp_path):
    import shutil

    both = tmp_path / "both"
    shutil.copytree(v3_checkpoint, both)
    shutil.copy(both / "t3_mtl23ls_v3.safetensors", both / "t3_mtl23ls_v2.safetensors")
    assert ce.load(str(both), watermark=False).info["version"] == "v2"
    assert ce.load(str(both), variant="multilingual", version="v3", watermark=False).info["version"] == "v3"
    assert ce.load(str(v3_checkpoint), watermark=False).info["version"] == "v3"  # detected
    with pytest.raises(CheckpointError, match="has no multilingual model"):
        ce.load(str(v3_checkpoint), variant="multilingual", version="v2")


@pytest.mark.parametrize("tag", PARALINGUISTIC_TAGS)
def test_turbo_and_nano_read_each_tag_as_one_token(nano_engine, tag):
    assert nano_engine.paralinguistic_tags == PARALINGUISTIC_TAGS
    request = nano_engine.request(f"Well {tag} that is fine.")
    ids = request.text_pieces[0][0].tolist()
    assert nano_engine.tokenizer.tokenizer.token_to_id(tag) in ids
    assert request.dropped_tags == ()


def test_tags_pass_through_normalisation_and_sentence_splitting_untouched():
    text = "[laugh] oh that is funny. [clear throat] Anyway: where were we? [sigh]"
    pieces = split_sentences(text)
    assert " ".join(pieces) == text
    normalised = punc_norm(pieces[0], **SPECS["nano"].punctuation)
    for tag in ("[laugh]", "[clear throat]", "[sigh]"):
        assert tag in normalised


def test_models_without_tags_drop_them_and_say_which(tiny_engine, v3_engine):
    assert tiny_engine.paralinguistic_tags == v3_engine.paralinguistic_tags == ()
    request = tiny_engine.request("Well [laugh] that is fine [laugh]. [cough] Sure [unknown].", seed=1)
    assert request.dropped_tags == ("[laugh]", "[cough]")
    expected = tiny_engine.request("Well that is fine. Sure [unknown].", seed=1)
    assert [p.tolist() for p in request.text_pieces] == [p.tolist() for p in expected.text_pieces]
    assert v3_engine.request("[sigh] Bonjour.", language="fr").dropped_tags == ("[sigh]",)
    with pytest.raises(ce.InvalidTextError):
        tiny_engine.request("[laugh] [cough]")


def test_drop_tags_keeps_understood_tags_and_other_brackets():
    assert drop_tags("a [laugh] b [note]", ("[laugh]",)) == ("a [laugh] b [note]", ())
    assert drop_tags("a [laugh] b", ()) == ("a b", ("[laugh]",))
