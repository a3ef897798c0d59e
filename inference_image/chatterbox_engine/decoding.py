"""The T3 decode loop we own: one prefill, then one-token steps against a static KV cache.

Each call allocates its own cache and uses the caller's generator, so several requests can decode
concurrently on one shared (read-only) model. Tokens are yielded as they are sampled, which is what
streaming builds on; closing the iterator stops decoding at the next token.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .sampling import SamplingParams, sample_next
from .t3 import T3


@torch.inference_mode()
def decode_speech_tokens(
    t3: T3,
    cond: Tensor,
    text_tokens: Tensor,
    params: SamplingParams,
    generator: torch.Generator,
    max_new_tokens: int,
) -> Iterator[int]:
    """Yield sampled speech token ids until the stop token (not yielded) or max_new_tokens.

    cond (1, cond_len, C) from `T3.embed_conditioning`; text_tokens (1, L) with start/stop tokens.
    With cfg_weight > 0 the batch holds a conditional and an unconditional row (CFG); without, one row.
    """
    cfg = t3.cfg
    embeds = t3.prefill_embeds(cond, text_tokens, cfg_rows=params.cfg_weight > 0)  # (B, P, C)
    batch, position = embeds.shape[0], embeds.shape[1]
    cache = t3.new_cache(batch, position + max_new_tokens)
    logits = t3(embeds, cache, 0, last_only=True)[:, -1]  # (B, V)
    # Repetition-penalty history: the speech BOS, then every sampled token (upstream keeps the BOS).
    history = torch.full(
        (1, max_new_tokens + 1), cfg.start_speech_token, dtype=torch.long, device=embeds.device
    )
    for step in range(max_new_tokens):
        token = sample_next(logits, history[:, : step + 1], params, generator)  # (1, 1)
        history[:, step + 1] = token[0]
        token_id = int(token)
        if token_id == cfg.stop_speech_token:
            return
        yield token_id
        if step + 1 == max_new_tokens:
            return
        # The k-th generated token sits at learned speech position k (the BOS took position 0).
        step_embeds = t3.embed_speech(token, step + 1).expand(batch, -1, -1)
        logits = t3(step_embeds, cache, position)[:, -1]
        position += 1
