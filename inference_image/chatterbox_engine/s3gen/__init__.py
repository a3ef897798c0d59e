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
    s3.synthesize([SynthesisWindow(tokens, ref, generator, source), ...]) -> [(wav, source), ...]
                                                # equal-shape windows of several utterances in one batch

Randomness (CFM start noise, NSF phases and noise) comes only from the passed `torch.Generator`, drawn in
upstream's order (a generator seeded like upstream's global RNG reproduces its audio); `noise` and `source` can
be injected. Weight norm is folded into plain conv weights at load time. The model may be built on the meta
device and loaded with `assign=True`. `.to(torch.bfloat16 / float16)` casts the synthesis path only: the
tokenizer and CAMPPlus stay float32, and the ODE state, STFTs and NSF source are float32; outputs are float32.
The tokenizer handles audio over 30 s in s3tokenizer's overlapping 30 s windows.

Deliberate difference from upstream: `embed_ref` keeps exactly 2 prompt frames per prompt token (upstream keeps
an odd extra frame for references that are not a whole number of 40 ms, so its output drifts by one frame).
References carrying that extra frame (e.g. from `conds.pt`) are still accepted and rendered as upstream does.

Streaming helpers (the chunk scheduling itself lives in the engine's `streaming.py`):
- `flow_inference(..., finalize=False)` drops the last 2 x 3 mel frames, which still depend on the encoder's
  3-token lookahead; `finalize=True` (default) renders everything.
- `hift_inference(mel, generator, source=cached)` reuses the first S excitation samples from a previous window
  over the same audio, so harmonic phases line up and overlapping chunks cross-fade without clicks.
- `model.apply_trim_fade(wav, s3.trim_fade)` applies upstream's 40 ms trim/fade to the first chunk only.
"""

from .config import S3GenConfig
from .model import S3Gen, S3GenReference, SynthesisWindow

__all__ = ["S3Gen", "S3GenConfig", "S3GenReference", "SynthesisWindow"]
