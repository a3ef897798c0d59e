"""Model variants on tiny random weights: loading and detection, checkpoint layouts, languages,
ignored knobs, Turbo's reference rules, synthesis and streaming."""

from __future__ import annotations

import json

import chatterbox_engine as ce
import numpy as np
import pytest
import torch
from chatterbox_engine.text_mtl import korean_to_jamo
from chatterbox_engine.variants import SPECS
from chatterbox_engine.voice import synthetic_reference

from .conftest import built_on_one_thread


@pytest.fixture(scope="session")
def multilingual_engine() -> ce.Engine:
    return built_on_one_thread(lambda: ce.load("random:tiny-multilingual", watermark=False))


@pytest.fixture(scope="session")
def turbo_engine() -> ce.Engine:
    return built_on_one_thread(lambda: ce.load("random:tiny-turbo", watermark=False))


@pytest.fixture(scope="session")
def multilingual_checkpoint(tmp_path_factory, multilingual_engine):
    folder = tmp_path_factory.mktemp("mtl")
    multilingual_engine.save_checkpoint(folder)
    return folder


@pytest.fixture(scope="session")
def turbo_checkpoint(tmp_path_factory, turbo_engine):
    folder = tmp_path_factory.mktemp("turbo")
    turbo_engine.save_checkpoint(folder)
    return folder


def test_info_languages_and_ignored_parameters(tiny_engine, multilingual_engine, turbo_engine):
    assert tiny_engine.info["variant"] == "english"
    assert multilingual_engine.info["variant"] == "multilingual"
    assert turbo_engine.info["variant"] == "turbo"
    assert tiny_engine.supported_languages == turbo_engine.supported_languages == {"en": "English"}
    assert tiny_engine.unavailable_languages == turbo_engine.unavailable_languages == {}
    languages = multilingual_engine.supported_languages
    assert {"en", "fr", "de", "ko", "ja", "ar", "he", "hi", "ru"} <= set(languages)
    assert languages["fr"] == "French"
    assert set(turbo_engine.ignored_parameters) == {"exaggeration", "cfg_weight", "min_p", "language"}
    assert multilingual_engine.ignored_parameters == ()


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("fr", "Bonjour à tous, ça va?"),
        ("ko", "안녕하세요 세계"),
        ("ja", "日本語を話します。"),
        ("ru", "Привет, мир"),
    ],
)
def test_multilingual_synthesises_each_script(multilingual_engine, language, text):
    result = multilingual_engine.generate(text, language=language, seed=3, max_new_tokens=40)
    assert result.num_tokens > 0
    assert result.audio.dtype == np.float32 and result.audio.size == result.num_tokens * 960
    assert np.isfinite(result.audio).all()


def test_language_changes_the_tokens_and_is_validated(multilingual_engine, tiny_engine, turbo_engine):
    tokens = {
        lang: multilingual_engine.request("Hola amigo", language=lang).text_pieces[0] for lang in ("es", "it")
    }
    assert tokens["es"][0, 1] != tokens["it"][0, 1]  # the language tag follows [START]
    assert torch.equal(tokens["es"][0, 2:], tokens["it"][0, 2:])
    with pytest.raises(
        ce.InvalidParameterError, match="language 'xx' is not supported by the multilingual model"
    ):
        multilingual_engine.generate("Hello", language="xx")
    for engine in (tiny_engine, turbo_engine):
        with pytest.raises(ce.InvalidParameterError, match="speaks only English"):
            engine.generate("Bonjour", language="fr")
    # English is accepted by every variant, in any case.
    assert multilingual_engine.request("Hi", language="EN").language == "en"
    assert tiny_engine.request("Hi", language="en").language == "en"


def test_chinese_is_reported_unavailable_without_its_front_end(multilingual_engine):
    # The random checkpoint has no Cangjie table (and pkuseg's model is not installed here).
    assert "zh" not in multilingual_engine.supported_languages
    assert "Cangjie5_TC.json" in multilingual_engine.unavailable_languages["zh"]
    with pytest.raises(ce.InvalidParameterError, match="Chinese needs"):
        multilingual_engine.generate("你好", language="zh")


def test_korean_is_split_into_jamo():
    assert korean_to_jamo("한") == "\u1112\u1161\u11ab"
    assert korean_to_jamo("가 a") == "\u1100\u1161 a"


def test_unset_knobs_take_the_variants_upstream_defaults(tiny_engine, multilingual_engine, turbo_engine):
    # Upstream 0.1.7: Turbo samples with top_p 0.95, multilingual with repetition penalty 2.0.
    english = tiny_engine.request("Hi").sampling
    assert english == ce.SamplingParams(
        cfg_weight=0.5, temperature=0.8, top_p=1.0, min_p=0.05, repetition_penalty=1.2
    )
    assert turbo_engine.request("Hi").sampling.top_p == 0.95
    assert multilingual_engine.request("Hi").sampling.repetition_penalty == 2.0
    assert multilingual_engine.request("Hi", repetition_penalty=1.2).sampling == english


def test_turbo_ignores_its_unused_knobs(turbo_engine):
    text = "Hello there friend."
    plain = turbo_engine.generate(text, seed=5, max_new_tokens=30)
    changed = turbo_engine.generate(
        text, seed=5, max_new_tokens=30, cfg_weight=0.9, min_p=0.3, exaggeration=1.5
    )
    np.testing.assert_array_equal(plain.audio, changed.audio)
    # Turbo ends each piece with three silence tokens: three extra token periods of audio.
    assert plain.audio.size == (plain.num_tokens + 3) * 960


def test_turbo_stream_matches_one_shot(turbo_engine):
    text = "Hello there. A second sentence!"
    whole = turbo_engine.generate(text, seed=8, max_new_tokens=30)
    chunks = list(turbo_engine.generate_stream(text, seed=8, max_new_tokens=30, chunk_tokens=8))
    assert chunks[-1].is_last and chunks[-1].num_tokens == whole.num_tokens
    streamed = np.concatenate([c.audio for c in chunks])
    assert streamed.size == whole.audio.size


def test_turbo_needs_longer_references(turbo_engine):
    audio, rate = synthetic_reference(seconds=4.0)
    with pytest.raises(ce.InvalidAudioError, match="at least 5 s"):
        turbo_engine.embed_voice(audio, rate)
    voice = turbo_engine.embed_voice(*synthetic_reference(seconds=8.0))
    assert voice.prompt_tokens.shape[1] > 150  # Turbo prompts with up to 15 s (375 tokens)


def test_turbo_reference_loudness_is_normalised(turbo_engine):
    audio, rate = synthetic_reference(seconds=6.0)
    quiet = turbo_engine.embed_voice(0.1 * audio, rate)
    loud = turbo_engine.embed_voice(audio, rate)
    assert torch.allclose(quiet.s3gen_ref.prompt_feat, loud.s3gen_ref.prompt_feat, atol=1e-3)


def test_multilingual_checkpoint_layout_and_reload(multilingual_checkpoint, multilingual_engine):
    names = {p.name for p in multilingual_checkpoint.iterdir()}
    assert {"t3_mtl23ls_v2.safetensors", "s3gen.pt", "ve.pt", "grapheme_mtl_merged_expanded_v1.json"} <= names
    assert "conds.pt" in names
    # The .pt files are plain tensor dicts: they load without unpickling arbitrary objects.
    state = torch.load(multilingual_checkpoint / "s3gen.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    engine = ce.load(str(multilingual_checkpoint), watermark=False)
    assert engine.info["variant"] == "multilingual"
    ours = engine.generate("Guten Tag.", language="de", seed=2, max_new_tokens=20)
    theirs = multilingual_engine.generate("Guten Tag.", language="de", seed=2, max_new_tokens=20)
    np.testing.assert_array_equal(ours.audio, theirs.audio)


def test_turbo_checkpoint_layout_and_reload(turbo_checkpoint, turbo_engine):
    names = {p.name for p in turbo_checkpoint.iterdir()}
    assert set(SPECS["turbo"].required_files) <= names
    added = json.loads((turbo_checkpoint / "added_tokens.json").read_text())
    assert min(added.values()) == 50257 and max(added.values()) == 50275
    engine = ce.load(turbo_checkpoint, watermark=False)
    assert engine.info["variant"] == "turbo"
    assert engine.tokenizer.vocab_size == 50276
    ours = engine.generate("Hello [laugh] there.", seed=4, max_new_tokens=20)
    theirs = turbo_engine.generate("Hello [laugh] there.", seed=4, max_new_tokens=20)
    np.testing.assert_array_equal(ours.audio, theirs.audio)


def test_variant_detection_and_mismatch(multilingual_checkpoint, turbo_checkpoint, tmp_path):
    assert (
        ce.load(multilingual_checkpoint, variant="multilingual", watermark=False).info["variant"]
        == "multilingual"
    )
    with pytest.raises(ce.CheckpointError, match="has no turbo model"):
        ce.load(multilingual_checkpoint, variant="turbo")
    with pytest.raises(ce.CheckpointError, match="unknown model variant"):
        ce.load(turbo_checkpoint, variant="klingon")
    with pytest.raises(ce.CheckpointError, match="holds the turbo model"):
        ce.load("random:tiny-turbo", variant="english")
    with pytest.raises(ce.CheckpointError, match="no T3 file"):
        ce.load(tmp_path)


def test_turbo_file_without_unused_token_table_still_loads(turbo_checkpoint, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "turbo"
    shutil.copytree(turbo_checkpoint, folder)
    state = load_file(folder / "t3_turbo_v1.safetensors")
    assert "tfmr.wte.weight" in state  # written like the official file
    del state["tfmr.wte.weight"]
    save_file(state, folder / "t3_turbo_v1.safetensors")
    assert ce.load(folder, watermark=False).info["variant"] == "turbo"


def test_multilingual_pt_file_must_hold_only_tensors(multilingual_checkpoint, tmp_path):
    import shutil

    folder = tmp_path / "mtl"
    shutil.copytree(multilingual_checkpoint, folder)
    torch.save({"weights": [1, 2, 3]}, folder / "ve.pt")
    with pytest.raises(ce.CheckpointError, match="ve.pt"):
        ce.load(folder)
