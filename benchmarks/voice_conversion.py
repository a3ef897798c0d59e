"""Voice conversion: ours (`Engine.convert`, `convert_stream`) vs upstream chatterbox-tts 0.1.7 `ChatterboxVC.generate`.

Both load the same `random:full` checkpoint written in the official layout and convert the same source
(speech-like synthetic audio) into the same target voice, alternately in this one process. Upstream renders
the whole source in one S3Gen call; ours one-shot renders 10 s windows, and streamed the first 0.4 s
first. Printed per source length: real-time factor (wall / audio seconds, upstream's from a file it loads
itself) and, streamed, time to first audio. Watermarking is off on both sides.

    .venv/bin/python benchmarks/voice_conversion.py [--seconds 5,20] [--repeats 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import chatterbox_engine as ce
import numpy as np
import soundfile
import torch
from chatterbox_engine.loading import random_models
from chatterbox_engine.voice import synthetic_reference


def write_checkpoint(folder: Path) -> None:
    engine = ce.Engine(
        random_models("random:full"), source="random:full", device="cpu", dtype=torch.float32, watermark=False
    )
    engine.save_checkpoint(folder)


def time_upstream(vc, source_path: Path, target_path: Path) -> float:
    started = time.perf_counter()
    vc.generate(str(source_path), target_voice_path=str(target_path))
    return time.perf_counter() - started


def time_ours(
    engine: ce.Engine, source: np.ndarray, rate: int, voice: ce.Voice
) -> tuple[float, float, float]:
    """Seconds for one-shot convert, then streamed: to the first chunk and to the end."""
    started = time.perf_counter()
    engine.convert(source, rate, voice, seed=0)
    one_shot = time.perf_counter() - started
    started = time.perf_counter()
    first = None
    for _ in engine.convert_stream(source, rate, voice, seed=0):
        first = first if first is not None else time.perf_counter() - started
    return one_shot, first or 0.0, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", default="5,20", help="comma-separated source lengths")
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds per length (best kept)")
    args = parser.parse_args()
    from chatterbox.vc import ChatterboxVC

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_checkpoint(folder)
        ours = ce.load(str(folder), watermark=False)
        upstream = ChatterboxVC.from_local(folder, "cpu")
        upstream.watermarker.apply_watermark = lambda wav, sample_rate: wav
        target, rate = synthetic_reference(seconds=8.0, sample_rate=24_000)
        soundfile.write(folder / "target.wav", target, rate, subtype="FLOAT")
        voice = ours.embed_voice(target, rate)
        warm_up = synthetic_reference(seconds=1.0, sample_rate=16_000)[0]
        soundfile.write(folder / "source.wav", warm_up, 16_000, subtype="FLOAT")
        time_upstream(upstream, folder / "source.wav", folder / "target.wav")
        time_ours(ours, warm_up, 16_000, voice)
        print(f"voice conversion, full-size random weights, fp32, CPU, {torch.get_num_threads()} threads")
        print(
            f"{'source':>7} {'upstream RTF':>13} {'ours RTF':>9} {'ratio':>6} {'streamed RTF':>13} {'TTFA':>7}"
        )
        for seconds in (float(s) for s in args.seconds.split(",")):
            source = 0.8 * synthetic_reference(seconds=seconds, sample_rate=16_000)[0][::-1].copy()
            soundfile.write(folder / "source.wav", source, 16_000, subtype="FLOAT")
            theirs, mine, first, streamed = [], [], [], []
            for _ in range(args.repeats):
                theirs.append(time_upstream(upstream, folder / "source.wav", folder / "target.wav"))
                one_shot, to_first, whole = time_ours(ours, source, 16_000, voice)
                mine.append(one_shot)
                first.append(to_first)
                streamed.append(whole)
            upstream_rtf, ours_rtf = min(theirs) / seconds, min(mine) / seconds
            print(
                f"{seconds:>6g}s {upstream_rtf:>13.2f} {ours_rtf:>9.2f} {upstream_rtf / ours_rtf:>5.2f}x "
                f"{min(streamed) / seconds:>13.2f} {min(first):>6.2f}s"
            )


if __name__ == "__main__":
    main()
