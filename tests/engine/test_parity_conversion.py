"""Voice conversion parity with upstream chatterbox-tts 0.1.7's `ChatterboxVC.generate` on full-size random weights.

Both sides load the shared `random:full` checkpoint (upstream through `ChatterboxVC.from_local`) and convert
the same source file into the same target voice, upstream after `torch.manual_seed(seed)`, ours with that
seed. Upstream watermarks unconditionally; that step is left out on both sides (the engine loads without it).
Turbo's meanflow S3Gen is compared in test_parity_turbo.py.
"""

import numpy as np
import pytest
import soundfile
import torch
from chatterbox_engine.streaming import fade_out
from chatterbox_engine.voice import synthetic_reference

pytestmark = pytest.mark.parity
TOLERANCE = 1e-4


def convert_with_upstream(vc, source_path, target_path, seed: int) -> np.ndarray:
    vc.watermarker.apply_watermark = lambda wav, sample_rate: wav
    torch.manual_seed(seed)
    return vc.generate(str(source_path), target_voice_path=str(target_path))[0].numpy()


def test_conversion_matches_upstream_chatterbox_vc(full_checkpoint, full_engine, tmp_path):
    from chatterbox.vc import ChatterboxVC

    vc = ChatterboxVC.from_local(full_checkpoint, "cpu")
    # 3.2 s target (whole 40 ms frames, so upstream keeps no odd prompt frame) and a 2 s source at 22.05 kHz,
    # resampled to 16 kHz by librosa on both sides.
    target, target_rate = synthetic_reference(seconds=3.2, sample_rate=24_000)
    source, source_rate = synthetic_reference(seconds=2.0, sample_rate=22_050)
    source = 0.8 * source[::-1].copy()  # other speech than the target's
    soundfile.write(tmp_path / "target.wav", target, target_rate, subtype="FLOAT")
    soundfile.write(tmp_path / "source.wav", source, source_rate, subtype="FLOAT")

    theirs = convert_with_upstream(vc, tmp_path / "source.wav", tmp_path / "target.wav", seed=11)
    voice = full_engine.embed_voice(target, target_rate)
    ours = full_engine.convert(source, source_rate, voice, seed=11)

    assert ours.audio.shape == theirs.shape == (ours.num_tokens * 960,)
    # Ours ends every utterance with a 20 ms fade-out; the rest is upstream's audio.
    diff = float(np.abs(ours.audio - fade_out(theirs)).max())
    print(f"voice conversion: {ours.num_tokens} tokens, max abs diff {diff:.2e}")
    assert diff <= TOLERANCE
