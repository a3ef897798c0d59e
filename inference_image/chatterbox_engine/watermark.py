"""Resemble's Perth implicit watermark, applied to synthesised audio as upstream does (switchable)."""

from __future__ import annotations

import contextlib
import io
import logging
import threading

import numpy as np
import torch

log = logging.getLogger(__name__)
_BLOCK = 960  # samples; Perth's output is cut to whole multiples of this


class _PrintsToLog(io.TextIOBase):
    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.info("%s", line.strip())
        return len(text)


class Watermarker:
    """Lazily builds `perth.PerthImplicitWatermarker` once; calls are serialised because the Perth
    network object is shared between threads (the engine's loop and one-shot callers)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._lock = threading.Lock()
        self._impl = None

    def _watermarker(self):
        if self._impl is None:
            # Perth print()s its load message; as a log record it stays in the server's (JSON) log format.
            with contextlib.redirect_stdout(_PrintsToLog()):
                import perth

                if perth.PerthImplicitWatermarker is None:  # its import failed inside perth
                    raise RuntimeError("resemble-perth could not load its watermarking network")
                self._impl = perth.PerthImplicitWatermarker()
        return self._impl

    def apply(self, audio: np.ndarray) -> np.ndarray:
        """Watermark audio; the result has exactly the input's length."""
        if audio.size == 0:
            return audio
        # Perth drops a trailing partial block and fails on very short input: pad to whole blocks.
        padded_size = max(_BLOCK, -(-audio.size // _BLOCK) * _BLOCK)
        padded = np.pad(audio, (0, padded_size - audio.size))
        # Always in inference mode: Perth's network, once built inside it, only runs inside it.
        with self._lock, torch.inference_mode():
            marked = self._watermarker().apply_watermark(padded, sample_rate=self.sample_rate)
        return np.asarray(marked, dtype=np.float32)[: audio.size]
