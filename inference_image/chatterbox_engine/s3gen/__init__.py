"""S3Gen: S3 speech tokens -> 24 kHz audio (CosyVoice-2 style), plus the reference-audio front end.

Public surface (contract with the engine core):

    from chatterbox_engine.s3gen import S3Gen, S3GenConfig, S3GenReference
    s3 = S3Gen(S3GenConfig.full())              # or .tiny(); state_dict() keys == checkpoint-keys/s3gen.tsv
    s3.load_state_dict(sd, strict=True)         # accepts both weight-norm spellings and a file without
                                                #   tokenizer._mel_filters / tokenizer.window
    s3.tokenize(wav16k, max_len=None) -> (codes (B, N), lens (B,))
    s3.speaker_embedding(wav16k) -> (1, 192)
    s3.embed_ref(wav24k) -> S3GenReference      # caller cuts the reference to 10 s first
    s3.flow_inference(tokens, ref, generator, n_timesteps=10, noise=None, finalize=True) -> mel (1, 80, 2N)
    s3.hift_inference(mel, generator, source=None) -> (wav (1, 480 F), source (1, 1, 480 F))
    s3.inference(tokens, ref, generator, n_timesteps=10) -> wav (1, 960 N), trim/fade applied

Randomness (CFM start noise, NSF phases and noise) comes only from the passed `torch.Generator`; `noise` and
`source` can be injected. Weight norm is folded into plain conv weights at load time.

Streaming: see `streaming.py` (`StreamingVocoder`): the flow is re-run on the tokens so far (prompt + all
generated tokens) with `finalize=False` until the last chunk, so the conformer sees the same context as a
one-shot run; only the mel frames not emitted yet are vocoded, with a mel overlap whose excitation `source` is
carried over and a short crossfade at each joint.
"""

from .config import S3GenConfig
from .model import S3Gen, S3GenReference

__all__ = ["S3Gen", "S3GenConfig", "S3GenReference"]
