"""Loading: folders in the official layout (strict), the Hugging Face cache, random sources."""

import json
import shutil

import chatterbox_engine as ce
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from chatterbox_engine.checkpoint import OFFICIAL_FILES, T3_FILE, ModelConfigs
from chatterbox_engine.t3 import T3Config
from chatterbox_engine.variants import SPECS
from safetensors.torch import load_file, save_file


def test_tiny_checkpoint_round_trips_with_identical_output(tiny_engine, tiny_checkpoint):
    loaded = ce.load(tiny_checkpoint, watermark=False)  # a Path works as well as a str
    for key, value in tiny_engine.t3.state_dict().items():
        assert torch.equal(loaded.t3.state_dict()[key], value), key
    voice = loaded.default_voice
    assert torch.equal(voice.prompt_tokens, tiny_engine.default_voice.prompt_tokens)
    a = tiny_engine.generate("Round trip.", seed=3).audio
    b = loaded.generate("Round trip.", seed=3).audio
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("variant", sorted(SPECS))
def test_every_variants_shapes_round_trip_through_engine_config_json(variant):
    """What a non-official checkpoint's `engine_config.json` holds: each network's own settings, flat."""
    for configs in (ModelConfigs.tiny(variant), ModelConfigs.official(variant)):
        data = json.loads(json.dumps(configs.to_dict()))
        assert ModelConfigs.from_dict(data) == configs
        t3 = configs.t3
        assert "head_dim" not in data["t3"] and t3.head_dim * t3.num_heads == t3.hidden_size  # derived


def _copy(folder, tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(folder, target)
    return target


def test_missing_and_unexpected_keys_are_named(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    state = load_file(folder / T3_FILE)
    del state["speech_head.weight"]
    state["tfmr.layers.99.bogus"] = torch.zeros(1)
    save_file(state, folder / T3_FILE)
    with pytest.raises(ce.CheckpointError) as error:
        ce.load(str(folder), watermark=False)
    message = str(error.value)
    assert "t3_cfg.safetensors" in message
    assert "missing keys: speech_head.weight" in message
    assert "unexpected keys: tfmr.layers.99.bogus" in message


def test_wrong_shapes_are_named(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    state = load_file(folder / T3_FILE)
    state["text_emb.weight"] = state["text_emb.weight"][:10]
    save_file(state, folder / T3_FILE)
    with pytest.raises(ce.CheckpointError, match=r"wrong shapes: text_emb.weight \(10, 64\)"):
        ce.load(str(folder), watermark=False)


def test_s3gen_file_in_either_weight_norm_spelling_and_without_tokenizer_buffers_loads(
    tiny_engine, tiny_checkpoint, tmp_path
):
    folder = _copy(tiny_checkpoint, tmp_path)
    state = load_file(folder / "s3gen.safetensors")
    del state["tokenizer._mel_filters"], state["tokenizer.window"]
    legacy = {
        k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v"): v
        for k, v in state.items()
    }  # fmt: skip
    assert legacy.keys() != state.keys()
    save_file(legacy, folder / "s3gen.safetensors")
    loaded = ce.load(str(folder), watermark=False)
    a = tiny_engine.generate("Spellings.", seed=2).audio
    np.testing.assert_allclose(loaded.generate("Spellings.", seed=2).audio, a, atol=1e-5)


def test_s3gen_key_errors_are_checkpoint_errors(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    state = load_file(folder / "s3gen.safetensors")
    del state["flow.input_embedding.weight"]
    save_file(state, folder / "s3gen.safetensors")
    with pytest.raises(ce.CheckpointError, match="flow.input_embedding.weight"):
        ce.load(str(folder), watermark=False)


def test_incomplete_folder_lists_missing_files(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ce.CheckpointError, match="missing tokenizer.json"):
        ce.load(str(folder))


@pytest.mark.parametrize("source", ["random:huge", "not a repo", "a/b/c", "/no/such/folder", "", None])
def test_unknown_sources_are_checkpoint_errors(source):
    with pytest.raises(ce.CheckpointError):
        ce.load(source)


@pytest.mark.parametrize(("kwargs", "error"), [({"dtype": "int8"}, "dtype"), ({"device": "tpu:9"}, "device")])
def test_bad_device_or_dtype_are_parameter_errors(kwargs, error):
    with pytest.raises(ce.InvalidParameterError, match=error):
        ce.load("random:tiny", **kwargs)


@pytest.fixture
def offline_hub_cache(tiny_checkpoint, tmp_path, monkeypatch):
    """An offline Hugging Face cache holding ResembleAI/chatterbox at one commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--ResembleAI--chatterbox"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in [*OFFICIAL_FILES, "engine_config.json"]:
        shutil.copy(tiny_checkpoint / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub", commit


def test_hub_source_resolves_from_the_offline_cache(offline_hub_cache, monkeypatch):
    cache, commit = offline_hub_cache
    engine = ce.load("ResembleAI/chatterbox", cache_dir=str(cache), watermark=False)
    assert engine.info["model"] == "ResembleAI/chatterbox"
    monkeypatch.setenv("MODEL_CACHE_DIR", str(cache))
    assert ce.load(f"ResembleAI/chatterbox@{commit}", watermark=False).default_voice is not None


def test_hub_source_missing_from_the_offline_cache_is_a_clear_error(offline_hub_cache):
    cache, _ = offline_hub_cache
    with pytest.raises(ce.CheckpointError, match="cannot download ve.safetensors from ResembleAI/other"):
        ce.load("ResembleAI/other", cache_dir=str(cache))


@pytest.mark.parametrize("source", ["random:tiny"])
def test_random_sources_are_seeded(source, tiny_engine):
    again = ce.load(source, watermark=False)
    for key, value in tiny_engine.t3.state_dict().items():
        assert torch.equal(again.t3.state_dict()[key], value), key
    assert again.info == {**tiny_engine.info}


@pytest.mark.parity
def test_random_full_is_written_with_the_official_keys_and_loads_strictly(
    full_checkpoint, full_engine, checkpoint_table
):
    for file_name, table in [("t3_cfg.safetensors", "t3_en"), ("ve.safetensors", "ve")]:
        written = {k: tuple(v.shape) for k, v in load_file(full_checkpoint / file_name).items()}
        assert written == checkpoint_table(table), file_name
    s3gen_keys = set(load_file(full_checkpoint / "s3gen.safetensors"))
    assert len(s3gen_keys) == 2490
    assert not (full_checkpoint / "engine_config.json").exists()  # official shapes need no config
    assert full_engine.t3.cfg == T3Config.full()


@pytest.mark.parity
def test_full_size_engine_synthesises_and_streams(full_engine):
    result = full_engine.generate("Full size.", seed=1, max_new_tokens=8)
    assert 0 < result.num_tokens <= 8
    assert result.audio.size == result.num_tokens * 960 and np.isfinite(result.audio).all()
    chunks = list(full_engine.generate_stream("Full size.", seed=1, max_new_tokens=8))
    assert sum(c.audio.size for c in chunks) == result.audio.size and chunks[-1].is_last
