"""Resemble's Perth implicit watermark, applied to synthesised audio as upstream does (switchable)."""

from __future__ import annotations

import logging
import threading

import numpy as np

log = logging.getLogger(__name__)


class Watermarker:
    """Lazily builds `perth.PerthImplicitWatermarker` once; calls are serialised because the Perth
    network object is shared between worker threads."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._lock = threading.Lock()
        self._impl = None

    def _watermarker(self):
        if self._impl is None:
            import perth

            if perth.PerthImplicitWatermarker is None:  # its import failed inside perth
                raise RuntimeError("resemble-perth could not load its watermarking network")
            self._impl = perth.PerthImplicitWatermarker()
        return self._impl

    def apply(self, audio: np.ndarray) -> np.ndarray:
        if audio.size == 0:
            return audio
        with self._lock:
            marked = self._watermarker().apply_watermark(audio, sample_rate=self.sample_rate)
        return np.asarray(marked, dtype=np.float32)
