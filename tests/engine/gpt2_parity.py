"""Checks of our GPT-2 T3 against upstream's `ChatterboxTurboTTS` shared by the Turbo (upstream 0.1.7) and
Nano (upstream main) parity tests: the same comparisons on two architectures' checkpoints. `upstream` is
either release's TTS object; its `T3Cond` comes from the package it was imported from."""

from __future__ import annotations

import importlib

import torch
from chatterbox_engine.decoding import DecodeBatch, decode_speech_tokens, new_request
from chatterbox_engine.sampling import SamplingParams
from chatterbox_engine.t3_gpt2 import TOP_K
from chatterbox_engine.text import punc_norm

SPEECH_VOCAB = 6561
START_OF_SPEECH = 6561


def conditioning(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """A random unit speaker embedding (1, 256) and a 15 s speech prompt (1, 375), and the generator."""
    g = torch.Generator().manual_seed(seed)
    speaker = torch.nn.functional.normalize(torch.randn(1, 256, generator=g), dim=-1)
    prompt = torch.randint(0, SPEECH_VOCAB, (1, 375), generator=g)
    return speaker, prompt, g


def upstream_cond(upstream, speaker: torch.Tensor, prompt: torch.Tensor):
    package = type(upstream).__module__.rsplit(".", 1)[0]
    cond_enc = importlib.import_module(f"{package}.models.t3.modules.cond_enc")
    return cond_enc.T3Cond(
        speaker_emb=speaker, cond_prompt_speech_tokens=prompt, emotion_adv=0.5 * torch.ones(1, 1, 1)
    )


@torch.inference_mode()
def teacher_forced_logit_diffs(ours, upstream, text: str, forced_steps: int = 6) -> list[float]:
    """Max abs difference of the speech logits, prefill then each of `forced_steps` forced tokens, between
    our T3 (one forward, our KV cache) and upstream's (HF GPT-2 with past_key_values)."""
    speaker, prompt, g = conditioning()
    forced = torch.randint(0, SPEECH_VOCAB, (1, forced_steps), generator=g)
    text_tokens = ours.tokenizer.text_tokens(punc_norm(text))
    their_t3 = upstream.t3
    embeds, _ = their_t3.prepare_input_embeds(
        t3_cond=upstream_cond(upstream, speaker, prompt),
        text_tokens=text_tokens,
        speech_tokens=torch.full((1, 1), START_OF_SPEECH),
        cfg_weight=0.0,
    )
    output = their_t3.tfmr(inputs_embeds=embeds, use_cache=True)
    theirs, past = [their_t3.speech_head(output[0])], output.past_key_values
    for i in range(forced_steps):
        output = their_t3.tfmr(
            inputs_embeds=their_t3.speech_emb(forced[:, i : i + 1]), past_key_values=past, use_cache=True
        )
        theirs.append(their_t3.speech_head(output[0]))
        past = output.past_key_values

    t3 = ours.t3
    prefill = t3.prefill_embeds(t3.embed_conditioning(speaker, prompt, None), text_tokens)
    assert prefill.shape == embeds.shape
    cache = t3.new_cache(1, prefill.shape[1] + forced_steps)
    position = prefill.shape[1]
    mine = [t3(prefill, torch.arange(position)[None], cache, position)]
    for i in range(forced_steps):
        mine.append(t3(t3.speech_emb(forced[:, i : i + 1]), torch.tensor([[position]]), cache, position + 1))
        position += 1

    diffs = [(a - b).abs().max().item() for a, b in zip(mine, theirs, strict=True)]
    print(
        f"{ours.variant} T3 logits max abs diff per step (prefill first):",
        ", ".join(f"{d:.2e}" for d in diffs),
    )
    return diffs


@torch.inference_mode()
def cached_prefix_prefill_diffs(ours, upstream, text: str) -> list[float]:
    """Max abs difference of the first speech logits between upstream's whole prefill and our engine's, which
    reuses the voice's conditioning keys and values: the first request computes them, the second reuses them."""
    speaker, prompt, _ = conditioning(5)
    text_tokens = ours.tokenizer.text_tokens(punc_norm(text))
    embeds, _ = upstream.t3.prepare_input_embeds(
        t3_cond=upstream_cond(upstream, speaker, prompt),
        text_tokens=text_tokens,
        speech_tokens=torch.full((1, 1), START_OF_SPEECH),
        cfg_weight=0.0,
    )
    theirs = upstream.t3.speech_head(upstream.t3.tfmr(inputs_embeds=embeds)[0][:, -1])
    cond = ours.t3.embed_conditioning(speaker, prompt, None)
    diffs = []
    for _ in range(2):
        request = new_request(ours.t3, cond, text_tokens, SamplingParams(), torch.Generator(), 4)
        assert request.prefix_len == 1 + prompt.shape[1]  # speaker + speech prompt
        DecodeBatch(ours.t3, max_rows=1).prefill([request])
        diffs.append((request.logits - theirs).abs().max().item())
    return diffs


def decoded_tokens(ours, upstream, text: str, seed: int, steps: int) -> tuple[list[int], list[int]]:
    """The speech tokens of one seeded decode loop (temperature 0.8, top-p 0.95, penalty 1.2): ours from
    `decode_speech_tokens` with a generator, upstream's from `T3.inference_turbo` with the global RNG."""
    speaker, prompt, _ = conditioning(10 + seed)
    text_tokens = ours.tokenizer.text_tokens(punc_norm(text))
    torch.manual_seed(seed)
    theirs = upstream.t3.inference_turbo(
        upstream_cond(upstream, speaker, prompt),
        text_tokens,
        temperature=0.8,
        top_k=TOP_K,
        top_p=0.95,
        repetition_penalty=1.2,
        max_gen_len=steps,
    )
    with torch.inference_mode():
        mine = list(
            decode_speech_tokens(
                ours.t3,
                ours.t3.embed_conditioning(speaker, prompt, None),
                text_tokens,
                SamplingParams(temperature=0.8, top_p=0.95, repetition_penalty=1.2),
                torch.Generator().manual_seed(seed),
                steps + 1,
            )
        )
    return mine, theirs[0].tolist()


def check_synthesises_and_streams(ours, text: str) -> None:
    """A whole utterance has three trailing silence tokens' audio (as upstream's Turbo), and streaming
    it ends with the same token count."""
    result = ours.generate(text, seed=0, max_new_tokens=8)
    assert result.audio.size == (result.num_tokens + 3) * 960
    chunks = list(ours.generate_stream(text, seed=0, max_new_tokens=8, chunk_tokens=4))
    assert chunks[-1].is_last and chunks[-1].num_tokens == result.num_tokens
