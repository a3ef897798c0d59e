"""In-process checks of the server's pure parts: tempo, encoders, upload decoding, the voice library on disk."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from chatterbox_server.audio import StreamEncoder, TempoChanger, decode_upload, wav_bytes
from chatterbox_server.errors import Conflict, InvalidRequest, NotFound
from chatterbox_server.voices import VoiceLibrary
from safetensors.numpy import load_file, save_file

from .conftest import decode_audio

RATE = 24_000


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize("speed", [0.25, 0.5, 1.5, 4.0])
def test_tempo_changes_length_by_the_speed_factor(speed: float) -> None:
    changer = TempoChanger(speed, RATE)
    pieces = [changer.push(tone(0.2)) for _ in range(10)] + [changer.flush()]
    assert sum(piece.size for piece in pieces) / RATE == pytest.approx(2.0 / speed, rel=0.05)


def test_tempo_keeps_the_pitch() -> None:
    changer = TempoChanger(2.0, RATE)
    out = np.concatenate([changer.push(tone(1.0)), changer.flush()])
    spectrum = np.abs(np.fft.rfft(out))
    assert np.fft.rfftfreq(out.size, 1 / RATE)[spectrum.argmax()] == pytest.approx(220, abs=5)


def test_streamed_wav_and_pcm_carry_the_exact_samples() -> None:
    chunks = [tone(0.3), tone(0.2)]
    pcm = StreamEncoder("pcm", RATE)
    wav = StreamEncoder("wav", RATE)
    pcm_bytes = b"".join(pcm.encode(chunk) for chunk in chunks) + pcm.finish()
    wav_stream = b"".join(wav.encode(chunk) for chunk in chunks) + wav.finish()
    assert wav_stream[:4] == b"RIFF" and wav_stream[44:] == pcm_bytes
    samples, rate, _ = decode_audio(wav_stream)
    assert rate == RATE and samples.size == len(pcm_bytes) // 2


def test_upload_decoding_refuses_non_audio_and_overlong_clips() -> None:
    with pytest.raises(InvalidRequest, match="not a readable audio file"):
        decode_upload(b"plain text, not audio", max_seconds=60)
    with pytest.raises(InvalidRequest, match="longer than the 5 s limit"):
        decode_upload(wav_bytes(tone(6.0, 8_000), 8_000), max_seconds=5)
    audio, rate = decode_upload(wav_bytes(tone(2.0, 16_000), 16_000), max_seconds=5)
    assert rate == 16_000 and audio.size == 32_000


def save_tensors(tensors: dict, path: Path) -> None:
    save_file(tensors, str(path))


def library_at(root: Path, save=save_tensors) -> VoiceLibrary:
    return VoiceLibrary(root, load_tensors=lambda path: load_file(str(path)), save_tensors=save)


def add_voice(library: VoiceLibrary, name: str):
    return library.add(name, {"embedding": np.ones(4, np.float32)}, wav_bytes(tone(1.0), RATE),
                       duration_s=1.0, sample_rate=RATE)  # fmt: skip


def test_replicas_on_one_directory_see_each_others_changes(tmp_path: Path) -> None:
    first, second = library_at(tmp_path), library_at(tmp_path)
    record = add_voice(first, "Shared")
    assert second.find("Shared") == record and second.find(record.id) == record
    assert second.tensors(record)["embedding"].tolist() == [1, 1, 1, 1]
    with pytest.raises(Conflict):
        add_voice(second, "Shared")
    second.delete(record.id)
    assert first.find(record.id) is None
    with pytest.raises(NotFound):
        first.get(record.id)


def test_a_writer_failing_mid_write_leaves_the_library_as_it_was(tmp_path: Path) -> None:
    library = library_at(tmp_path)
    earlier = add_voice(library, "Earlier")

    def crash_half_way(tensors: dict, path: Path) -> None:
        path.write_bytes(b"half a tensor file")
        raise OSError("disk went away")

    with pytest.raises(OSError):
        add_voice(library_at(tmp_path, save=crash_half_way), "Doomed")
    reader = library_at(tmp_path)
    assert [record.name for record in reader.list()] == ["Earlier"]
    assert reader.tensors(earlier)["embedding"].size == 4
    assert not any((tmp_path / "staging").iterdir())


_WRITER = """
import sys
from pathlib import Path
import numpy as np
from safetensors.numpy import load_file, save_file
from chatterbox_server.voices import VoiceLibrary

library = VoiceLibrary(Path(sys.argv[1]), load_tensors=lambda p: load_file(str(p)),
                       save_tensors=lambda t, p: save_file(t, str(p)))
reference = bytes(4 * 1024 * 1024)  # large, so most of the time is spent inside a write
for index in range(1000):
    record = library.add(f"Voice {index}", {"embedding": np.full(256, index, np.float32)}, reference,
                         duration_s=1.0, sample_rate=24000)
    print(record.id, flush=True)
"""


def test_a_writer_sigkilled_mid_write_leaves_every_committed_voice_readable(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    committed = [writer.stdout.readline().strip() for _ in range(5)]
    time.sleep(random.uniform(0.0, 0.05))  # land somewhere inside the next write
    writer.kill()
    writer.wait()
    committed += [line.strip() for line in writer.stdout if line.strip()]

    library = library_at(tmp_path)
    listed = {record.id: record for record in library.list()}
    assert set(committed) <= set(listed)
    for record in listed.values():
        assert library.tensors(record)["embedding"].shape == (256,)
        assert len(library.reference_wav(record.id)) == 4 * 1024 * 1024


@pytest.mark.parametrize(
    "name", ["../escape", "a/b", "..", " padded", "x" * 65, "default", "voice_" + "0" * 24]
)
def test_names_never_become_paths(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidRequest):
        add_voice(library_at(tmp_path), name)
    assert library_at(tmp_path).list() == []
