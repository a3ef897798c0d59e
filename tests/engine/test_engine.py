"""The public engine on random:tiny: synthesis, determinism, threads, voices, streaming, errors."""

import dataclasses
import threading

import chatterbox_engine as ce
import numpy as np
import pytest
import torch
from chatterbox_engine.voice import synthetic_reference

SAMPLES_PER_TOKEN = 960
LONG_TEXT = " ".join(f"This is sentence number {i}, spoken by a tiny random model." for i in range(8))


def test_generate_returns_24khz_float_audio(tiny_engine):
    result = tiny_engine.generate("Hello there.", seed=1)
    assert result.sample_rate == ce.SAMPLE_RATE == tiny_engine.sample_rate == 24_000
    assert result.audio.dtype == np.float32 and result.audio.ndim == 1
    assert result.num_tokens > 0
    assert result.audio.size == result.num_tokens * SAMPLES_PER_TOKEN
    assert np.isfinite(result.audio).all() and np.abs(result.audio).max() <= 1.0
    assert result.t3_seconds > 0 and result.s3gen_seconds > 0


def test_info_describes_the_engine(tiny_engine):
    assert tiny_engine.info == {
        "model": "random:tiny",
        "variant": "english",
        "device": "cpu",
        "dtype": "float32",
        "stage_dtypes": {"t3": "float32", "s3gen": "float32"},
        "chunk_plan": "throughput",  # a CPU decodes full-size models slower than real time
        "version": None,
        "watermark": False,
    }


def test_same_seed_same_audio_and_other_seed_other_audio(tiny_engine):
    a = tiny_engine.generate("Same seed.", seed=11).audio
    b = tiny_engine.generate("Same seed.", seed=11).audio
    c = tiny_engine.generate("Same seed.", seed=12).audio
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_concurrent_requests_are_independent_and_reproducible(tiny_engine):
    expected = {seed: tiny_engine.generate("Threads.", seed=seed).audio for seed in (1, 2)}
    results: dict[int, list[np.ndarray]] = {1: [], 2: []}

    def work(seed: int) -> None:
        for _ in range(2):
            results[seed].append(tiny_engine.generate("Threads.", seed=seed).audio)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in (1, 2, 1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed, audios in results.items():
        assert len(audios) == 4
        for audio in audios:
            np.testing.assert_array_equal(audio, expected[seed])


def test_long_text_is_split_at_sentences_and_concatenated(tiny_engine):
    result = tiny_engine.generate(LONG_TEXT, seed=4)
    single = tiny_engine.generate("This is sentence number 0, spoken by a tiny random model.", seed=4)
    assert result.num_tokens > 2 * single.num_tokens
    assert result.audio.size == result.num_tokens * SAMPLES_PER_TOKEN
    assert abs(result.audio[-1]) < 1e-6  # each sentence fades out before the next one starts


def test_watermark_is_on_by_default_and_changes_the_audio(tiny_engine):
    marked = ce.load("random:tiny")
    assert marked.info["watermark"] is True
    plain = tiny_engine.generate("Watermark me.", seed=5).audio
    stamped = marked.generate("Watermark me.", seed=5).audio
    assert stamped.shape == plain.shape
    assert not np.allclose(stamped, plain)
    for size in (1, 100, 1000, 2049):  # odd lengths survive unchanged in size
        assert marked.watermarker.apply(np.full(size, 0.1, np.float32)).shape == (size,)


def test_voice_embeds_saves_and_loads(tiny_engine, tmp_path):
    audio, rate = synthetic_reference(seconds=3.0, sample_rate=16_000)
    voice = tiny_engine.embed_voice(audio, rate)
    assert voice.speaker_emb.shape == (1, tiny_engine.t3.cfg.speaker_embed_size)
    assert torch.allclose(voice.speaker_emb.norm(), torch.tensor(1.0))
    assert voice.prompt_tokens.shape[0] == 1 and 0 < voice.prompt_tokens.shape[1] <= 150
    voice.save(tmp_path / "voice.safetensors")
    loaded = ce.Voice.load(tmp_path / "voice.safetensors")
    for key, tensor in voice.to_tensors().items():
        assert torch.equal(loaded.to_tensors()[key], tensor), key
    a = tiny_engine.generate("My voice.", voice, seed=6).audio
    b = tiny_engine.generate("My voice.", loaded, seed=6).audio
    np.testing.assert_array_equal(a, b)
    # A torch tensor works as input too.
    tensor_voice = tiny_engine.embed_voice(torch.from_numpy(audio), rate)
    assert torch.equal(tensor_voice.prompt_tokens, voice.prompt_tokens)


def test_a_file_that_is_not_a_voice_is_a_checkpoint_error(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ce.CheckpointError):
        ce.Voice.load(tmp_path / "junk.safetensors")


def _ok_audio(seconds: float = 3.0, rate: int = 16_000) -> np.ndarray:
    return synthetic_reference(seconds=seconds, sample_rate=rate)[0]


@pytest.mark.parametrize(
    ("audio", "rate", "message"),
    [
        (_ok_audio(1.5), 16_000, "at least 2 s"),
        (np.zeros(48_000, np.float32), 16_000, "silent"),
        (np.full(48_000, np.nan, np.float32), 16_000, "NaN"),
        (np.stack([_ok_audio(), _ok_audio()]), 16_000, "mono"),
        (_ok_audio()[None, None], 16_000, "mono"),
        (np.float32(0.1), 16_000, "mono"),
        (_ok_audio(), 100, "sample_rate"),
        (_ok_audio(), 10_000_000, "sample_rate"),
        (_ok_audio(), 16_000.5, "sample_rate"),
        ((_ok_audio() * 32767).astype(np.int16), 16_000, "float"),
        (_ok_audio() * 1000, 16_000, r"\[-1, 1\]"),
    ],
)
def test_bad_reference_audio_is_a_typed_error(tiny_engine, audio, rate, message):
    with pytest.raises(ce.InvalidAudioError, match=message):
        tiny_engine.embed_voice(audio, rate)


@pytest.mark.parametrize(
    ("text", "kwargs", "error"),
    [
        ("", {}, ce.InvalidTextError),
        ("   \n", {}, ce.InvalidTextError),
        ("snowman ☃", {}, ce.InvalidTextError),
        ("ok", {"exaggeration": 5.0}, ce.InvalidParameterError),
        ("ok", {"temperature": 0.0}, ce.InvalidParameterError),
        ("ok", {"top_p": 2.0}, ce.InvalidParameterError),
        ("ok", {"seed": -1}, ce.InvalidParameterError),
        ("ok", {"seed": "abc"}, ce.InvalidParameterError),
        ("ok", {"max_new_tokens": 0}, ce.InvalidParameterError),
        ("ok", {"max_new_tokens": 100_000}, ce.InvalidParameterError),
    ],
)
def test_bad_requests_are_typed_errors_before_any_work(tiny_engine, text, kwargs, error):
    with pytest.raises(error) as raised:
        tiny_engine.generate(text, **kwargs)
    assert isinstance(raised.value, ce.EngineError) and isinstance(raised.value, ValueError)
    with pytest.raises(error):
        tiny_engine.generate_stream(text, **kwargs)  # raised at the call, not at the first chunk


def test_a_request_is_built_once_and_generates_like_the_shorthand(tiny_engine):
    request = tiny_engine.request("Built once.", seed=4, temperature=0.7)
    assert isinstance(request, ce.GenerationRequest) and request.sampling.temperature == 0.7
    assert request.voice is tiny_engine.default_voice and request.language == "en"
    np.testing.assert_array_equal(
        tiny_engine.generate(request).audio,
        tiny_engine.generate("Built once.", seed=4, temperature=0.7).audio,
    )
    with pytest.raises(TypeError, match="GenerationRequest alone"):
        tiny_engine.generate(request, seed=5)


def test_an_unseeded_request_keeps_the_seed_it_drew(tiny_engine):
    request = tiny_engine.request("Drawn seed.", max_new_tokens=8)
    assert 0 <= request.seed < 2**63
    again = tiny_engine.request("Drawn seed.", max_new_tokens=8, seed=request.seed)
    np.testing.assert_array_equal(tiny_engine.generate(request).audio, tiny_engine.generate(again).audio)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"cfg_weight": 11.0}, "cfg_weight"), ({"exaggeration": -1}, "exaggeration"), ({"seed": 2**63}, "seed"),
     ({"language": "xx"}, "language"), ({"max_new_tokens": 0}, "max_new_tokens")],
)  # fmt: skip
def test_a_bad_knob_is_named_by_its_error(tiny_engine, kwargs, param):
    with pytest.raises(ce.InvalidParameterError) as raised:
        tiny_engine.request("ok", **kwargs)
    assert raised.value.param == param and param in str(raised.value)


def test_a_voice_from_another_model_is_rejected(tiny_engine):
    voice = tiny_engine.default_voice
    foreign = ce.Voice(torch.ones(1, 256) / 16, voice.prompt_tokens, voice.s3gen_ref)
    with pytest.raises(ce.InvalidParameterError, match="not made for this model"):
        tiny_engine.generate("Wrong voice.", foreign)
    with pytest.raises(ce.InvalidParameterError, match="Voice"):
        tiny_engine.generate("Not a voice.", "alice")


@pytest.mark.parametrize("field", ["speaker_emb", "embedding"])
def test_a_voice_with_nan_values_is_rejected_before_it_runs(tiny_engine, field):
    voice = tiny_engine.default_voice
    if field == "speaker_emb":
        damaged = dataclasses.replace(voice, speaker_emb=torch.full_like(voice.speaker_emb, float("nan")))
    else:
        ref = dataclasses.replace(
            voice.s3gen_ref, embedding=torch.full_like(voice.s3gen_ref.embedding, np.nan)
        )
        damaged = dataclasses.replace(voice, s3gen_ref=ref)
    with pytest.raises(ce.InvalidParameterError, match="NaN") as raised:
        tiny_engine.request("Damaged voice.", damaged)
    assert raised.value.param == "voice"


def test_cfg_weight_zero_runs_without_the_unconditional_row(tiny_engine):
    # Upstream 0.1.7 crashes here; we decode the conditional row alone.
    assert tiny_engine.generate("No guidance.", cfg_weight=0.0, seed=2).num_tokens > 0


def test_bfloat16_t3_synthesises(bf16_engine):
    assert bf16_engine.info["dtype"] == "bfloat16"
    result = bf16_engine.generate("Half precision.", seed=1)
    assert result.num_tokens > 0 and np.isfinite(result.audio).all()


def test_max_new_tokens_caps_the_speech(tiny_engine):
    result = tiny_engine.generate("Capped.", seed=3, max_new_tokens=5)
    assert 0 < result.num_tokens <= 5


def _join_jumps(chunks: list[np.ndarray]) -> list[float]:
    ends = np.cumsum([len(c) for c in chunks])[:-1]
    audio = np.concatenate(chunks)
    return [abs(float(audio[i] - audio[i - 1])) for i in ends if 0 < i < len(audio)]


def test_stream_matches_one_shot_length_and_joins_smoothly(tiny_engine):
    one_shot = tiny_engine.generate(LONG_TEXT, seed=8)
    chunks = list(tiny_engine.generate_stream(LONG_TEXT, seed=8, chunk_tokens=12))
    assert len(chunks) > 3
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[0].audio.size <= 10 * SAMPLES_PER_TOKEN  # small first chunk
    covered = [c.num_tokens for c in chunks]
    assert covered == sorted(covered) and covered[-1] == one_shot.num_tokens
    audio = np.concatenate([c.audio for c in chunks])
    assert audio.dtype == np.float32
    assert audio.size == one_shot.audio.size
    # No click at chunk joins: no jump larger than the largest step inside the one-shot audio.
    largest_step = float(np.abs(np.diff(one_shot.audio)).max())
    assert max(_join_jumps([c.audio for c in chunks])) <= largest_step


@pytest.mark.parametrize(
    ("plan", "due_every"), [("realtime", [10, 25, 50, 100, 100, 100]), ("throughput", [10, 100, 200])]
)
def test_stream_chunks_grow_after_a_small_first_chunk(tiny_engine, plan, due_every):
    """Later chunks grow (realtime: doubling to 4 s; throughput: 4 s, then doubling to 16 s), so a long
    utterance re-renders its prompt through S3Gen less often; the first chunk is 0.4 s in both."""
    from chatterbox_engine.streaming import CHUNK_PLANS, ChunkRenderer

    renderer = ChunkRenderer(
        tiny_engine.s3gen, tiny_engine.default_voice.s3gen_ref, torch.Generator(), CHUNK_PLANS[plan]
    )
    tokens = torch.randint(0, 6561, (400,), generator=torch.Generator().manual_seed(0)).tolist()
    emitted, due_at = [], []

    def render(final: bool) -> np.ndarray:
        end = len(renderer.tokens)
        return renderer.take(end, final, *tiny_engine.s3gen.synthesize([renderer.window(end)])[0])

    with torch.inference_mode():  # as the engine renders
        for token in tokens:
            renderer.tokens.append(token)
            if renderer.next_chunk_due():
                due_at.append(len(renderer.tokens))
                emitted.append(render(final=False))
        emitted.append(render(final=True))
    assert np.diff([0, *due_at]).tolist() == due_every
    assert sum(chunk.size for chunk in emitted) == len(tokens) * SAMPLES_PER_TOKEN


def test_the_chunk_plan_follows_the_device_unless_named(tiny_engine):
    from chatterbox_engine.streaming import CHUNK_PLANS, chunk_plan_name

    assert chunk_plan_name("auto", "cpu") == "throughput"
    assert chunk_plan_name("auto", "cuda:0") == "realtime"
    assert chunk_plan_name("realtime", "cpu") == "realtime"
    with pytest.raises(ce.InvalidParameterError, match="chunk plan must be auto or one of"):
        tiny_engine.use_chunk_plan("fastest")
    assert tiny_engine.info["chunk_plan"] == "throughput"  # a refused name changes nothing
    # Where decoding is slower than real time, later sentences start with a full chunk.
    assert CHUNK_PLANS["throughput"].for_piece(1).chunk_size(0) == 100
    assert CHUNK_PLANS["throughput"].for_piece(0).chunk_size(0) == 10
    assert CHUNK_PLANS["realtime"].for_piece(3).chunk_size(0) == 10


def test_the_throughput_plan_renders_fewer_windows_for_the_same_audio_length(tiny_engine, monkeypatch):
    one_shot = tiny_engine.generate(LONG_TEXT, seed=8)
    calls: dict[str, list] = {"realtime": [], "throughput": []}
    real_synthesize = tiny_engine.s3gen.synthesize
    for plan, windows in calls.items():
        monkeypatch.setattr(
            tiny_engine.s3gen,
            "synthesize",
            lambda w, *a, log=windows, **k: log.append(w) or real_synthesize(w, *a, **k),
        )
        tiny_engine.use_chunk_plan(plan)
        try:
            chunks = list(tiny_engine.generate_stream(LONG_TEXT, seed=8))
        finally:
            tiny_engine.use_chunk_plan("auto")
            monkeypatch.undo()
        assert chunks[0].audio.size <= 10 * SAMPLES_PER_TOKEN  # the first audio as early in both
        assert sum(c.audio.size for c in chunks) == one_shot.audio.size
        assert chunks[-1].num_tokens == one_shot.num_tokens
    assert len(calls["throughput"]) < len(calls["realtime"])


def test_a_shorter_continuation_prompt_is_opt_in_and_keeps_the_first_chunk(tiny_engine, monkeypatch):
    """Windows after a sentence's first render with the voice prompt's last tokens only: the same length
    of audio, and the first chunk (rendered with the whole prompt) unchanged."""
    text = "A first sentence to stream in chunks. And a second one after it."
    exact = list(tiny_engine.generate_stream(text, seed=4))
    prompt_tokens = tiny_engine.default_voice.s3gen_ref.prompt_token.size(-1)
    prompts = []
    real_synthesize = tiny_engine.s3gen.synthesize
    monkeypatch.setattr(
        tiny_engine.s3gen,
        "synthesize",
        lambda windows, *a, **k: (
            prompts.append(windows[0].ref.prompt_token.size(-1)) or real_synthesize(windows, *a, **k)
        ),
    )
    tiny_engine.use_chunk_plan("throughput", continuation_prompt_tokens=20)
    try:
        assert tiny_engine.info["continuation_prompt_tokens"] == 20
        shortened = list(tiny_engine.generate_stream(text, seed=4))
    finally:
        tiny_engine.use_chunk_plan("auto")
    assert "continuation_prompt_tokens" not in tiny_engine.info
    np.testing.assert_array_equal(shortened[0].audio, exact[0].audio)
    assert sum(c.audio.size for c in shortened) == sum(c.audio.size for c in exact)
    assert prompts[0] == prompt_tokens and 20 in prompts  # each sentence's first window: the whole prompt
    with pytest.raises(ce.InvalidParameterError, match="continuation prompt must be 1-250 tokens"):
        tiny_engine.use_chunk_plan("auto", continuation_prompt_tokens=0)


def test_a_prompt_tail_keeps_the_frames_of_its_tokens():
    from chatterbox_engine.s3gen import S3GenReference
    from chatterbox_engine.streaming import prompt_tail

    feat = torch.arange(21 * 80, dtype=torch.float32).reshape(1, 21, 80)  # 10 tokens + an odd extra frame
    ref = S3GenReference(torch.arange(10).unsqueeze(0), torch.tensor([10]), feat, torch.zeros(1, 192))
    tail = prompt_tail(ref, 4)
    assert tail.prompt_token.tolist() == [[6, 7, 8, 9]] and tail.prompt_token_len.tolist() == [4]
    torch.testing.assert_close(tail.prompt_feat, feat[:, 12:20])
    assert prompt_tail(ref, None) is ref and prompt_tail(ref, 10) is ref


@pytest.mark.parametrize("chunk_tokens", [0, 501, 2.5, True])
def test_chunk_tokens_out_of_range_are_refused_before_any_work(tiny_engine, chunk_tokens):
    with pytest.raises(ce.InvalidParameterError, match="chunk_tokens must be between 1 and 500"):
        tiny_engine.generate_stream("Hello.", chunk_tokens=chunk_tokens)


@pytest.mark.parametrize("max_requests", [0, -1, 2.0, True])
def test_a_batch_size_below_one_is_refused(tiny_engine, max_requests):
    with pytest.raises(ce.InvalidParameterError, match="max_requests must be at least 1"):
        tiny_engine.enable_batching(max_requests=max_requests)


def test_one_token_chunks_still_cover_the_whole_utterance(tiny_engine):
    one_shot = tiny_engine.generate("Tiny chunks.", seed=3)
    chunks = list(tiny_engine.generate_stream("Tiny chunks.", seed=3, chunk_tokens=1))
    assert all(c.audio.size > 0 for c in chunks)
    assert sum(c.audio.size for c in chunks) == one_shot.audio.size


def test_stream_with_an_odd_frame_reference_matches_one_shot(tiny_engine):
    # Upstream-made voices (e.g. conds.pt) may carry one prompt frame more than 2 per token; S3Gen then
    # drops the first output frame, and stream windows must stay aligned regardless.
    voice = tiny_engine.default_voice
    ref = voice.s3gen_ref
    odd_ref = type(ref)(
        ref.prompt_token,
        ref.prompt_token_len,
        torch.cat([ref.prompt_feat, ref.prompt_feat[:, -1:]], 1),
        ref.embedding,
    )
    odd_voice = ce.Voice(voice.speaker_emb, voice.prompt_tokens, odd_ref)
    one_shot = tiny_engine.generate(LONG_TEXT, odd_voice, seed=8)
    chunks = list(tiny_engine.generate_stream(LONG_TEXT, odd_voice, seed=8, chunk_tokens=12))
    audio = np.concatenate([c.audio for c in chunks])
    assert audio.size == one_shot.audio.size
    assert max(_join_jumps([c.audio for c in chunks])) <= float(np.abs(np.diff(one_shot.audio)).max())


def test_closing_a_stream_stops_decoding(tiny_engine, monkeypatch):
    calls = {"n": 0}
    forward = type(tiny_engine.t3).forward

    def counting_forward(self, *args, **kwargs):
        calls["n"] += 1
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(tiny_engine.t3), "forward", counting_forward)
    stream = tiny_engine.generate_stream(LONG_TEXT, seed=9)
    next(stream)
    stream.close()
    after_close = calls["n"]
    with pytest.raises(StopIteration):
        next(stream)
    assert calls["n"] == after_close
    full_run = tiny_engine.generate(LONG_TEXT, seed=9).num_tokens
    assert after_close < full_run / 2
