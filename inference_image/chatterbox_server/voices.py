"""The voice library: cloned voices on a directory shared by replicas (a PVC in the cluster).

Layout under the library root:
    index.json                 the list of voices; the single source of truth, replaced atomically
    .lock                      file lock serialising writers across processes and replicas
    voices/<id>/meta.json      the voice's metadata
    voices/<id>/reference.wav  the reference clip (mono 16-bit at its own rate)
    voices/<id>/voice.safetensors  the engine's voice tensors, computed once at clone time
    staging/                   half-written voices; a writer killed mid-way leaves only debris here

A voice's folder is complete before the index names it, and the index is replaced by rename, so a
writer killed at any moment leaves every earlier voice readable. Readers take no lock. Ids are made
here and are the only thing that becomes a path; names are validated and stay data.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from .errors import Conflict, InvalidRequest, NotFound

logger = logging.getLogger(__name__)

DEFAULT_VOICE_ID = "default"
VOICE_ID_PATTERN = re.compile(r"^voice_[0-9a-f]{24}$")
VOICE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 _.\-]{0,62}[A-Za-z0-9_.\-])?$")
_EMBEDDING_CACHE_SIZE = 64
_STALE_STAGING_SECONDS = 3600


@dataclass(frozen=True)
class VoiceRecord:
    id: str
    name: str
    created_at: int
    duration_s: float
    sample_rate: int


def validate_voice_name(name: str) -> str:
    if not VOICE_NAME_PATTERN.match(name):
        problem = "must not be empty" if not name else "is not allowed"
        raise InvalidRequest(
            f"voice name {problem}: use 1-64 characters: letters, digits, space, '_', '.', '-', "
            "starting with a letter or digit, not ending with a space (no slashes or path parts)",
            param="name",
        )
    if name == DEFAULT_VOICE_ID or VOICE_ID_PATTERN.match(name):
        raise InvalidRequest(f"voice name {name!r} is reserved", param="name")
    return name


def is_voice_id(value: str) -> bool:
    return bool(VOICE_ID_PATTERN.match(value))


def _voice_id_not_found(voice_id: str) -> NotFound:
    if is_voice_id(voice_id):
        return NotFound(f"voice {voice_id!r} not found", param="voice_id")
    # Names are data, ids are paths: the path takes only ids, so a name is pointed at the list.
    return NotFound(
        f"{voice_id!r} is not a voice id: voice ids (voice_...), not names, go in the path; "
        "GET /v1/audio/voices lists each voice's id",
        param="voice_id",
    )


class VoiceLibrary:
    """Thread-safe within a process, lock-protected across processes. All methods do blocking file I/O."""

    def __init__(self, root: Path, *, load_tensors: Callable[[Path], Any], save_tensors: Callable) -> None:
        self.root = Path(root)
        self._load_tensors = load_tensors
        self._save_tensors = save_tensors
        self._voices_dir = self.root / "voices"
        self._staging_dir = self.root / "staging"
        self._index_path = self.root / "index.json"
        self._write_lock = FileLock(str(self.root / ".lock"))
        self._cache_guard = threading.Lock()
        self._index_cache: tuple[tuple[int, int, int], dict[str, VoiceRecord]] | None = None
        self._tensor_cache: OrderedDict[str, Any] = OrderedDict()
        for folder in (self._voices_dir, self._staging_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_staging()

    # Reading ---------------------------------------------------------------------------------------

    def list(self) -> list[VoiceRecord]:
        return sorted(self._read_index().values(), key=lambda record: (record.created_at, record.name))

    def get(self, voice_id: str) -> VoiceRecord:
        record = self._read_index().get(voice_id) if is_voice_id(voice_id) else None
        if record is None:
            raise _voice_id_not_found(voice_id)
        return record

    def find(self, id_or_name: str) -> VoiceRecord | None:
        """A voice by id, else by exact name; None when neither exists."""
        index = self._read_index()
        if id_or_name in index:
            return index[id_or_name]
        return next((record for record in index.values() if record.name == id_or_name), None)

    def tensors(self, record: VoiceRecord) -> Any:
        """The engine's voice object, loaded once per process and kept in a small LRU."""
        with self._cache_guard:
            if record.id in self._tensor_cache:
                self._tensor_cache.move_to_end(record.id)
                return self._tensor_cache[record.id]
        voice = self._load_tensors(self._voices_dir / record.id / "voice.safetensors")
        with self._cache_guard:
            self._tensor_cache[record.id] = voice
            while len(self._tensor_cache) > _EMBEDDING_CACHE_SIZE:
                self._tensor_cache.popitem(last=False)
        return voice

    def reference_wav(self, voice_id: str) -> bytes:
        record = self.get(voice_id)
        try:
            return (self._voices_dir / record.id / "reference.wav").read_bytes()
        except FileNotFoundError:  # deleted by another replica since the index was read
            raise _voice_id_not_found(voice_id) from None

    def ensure_name_free(self, name: str) -> None:
        if any(record.name == name for record in self._read_index().values()):
            raise Conflict(f"a voice named {name!r} already exists", param="name")

    # Writing ---------------------------------------------------------------------------------------

    def add(
        self, name: str, voice_tensors: Any, reference_wav: bytes, *, duration_s: float, sample_rate: int
    ):
        """Stores a new voice and returns its record; the voice is visible only once fully written."""
        validate_voice_name(name)
        record = VoiceRecord(
            id=f"voice_{secrets.token_hex(12)}",
            name=name,
            created_at=int(time.time()),
            duration_s=round(duration_s, 3),
            sample_rate=sample_rate,
        )
        staged = self._staging_dir / record.id
        staged.mkdir()
        try:
            self._save_tensors(voice_tensors, staged / "voice.safetensors")
            _fsync_file(staged / "voice.safetensors")
            _write_durably(staged / "reference.wav", reference_wav)
            _write_durably(staged / "meta.json", json.dumps(asdict(record)).encode())
            _fsync_dir(staged)
            with self._write_lock:
                index = self._read_index(force=True)
                if any(existing.name == name for existing in index.values()):
                    raise Conflict(f"a voice named {name!r} already exists", param="name")
                staged.rename(self._voices_dir / record.id)
                _fsync_dir(self._voices_dir)
                index[record.id] = record
                self._write_index(index)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return record

    def delete(self, voice_id: str) -> None:
        with self._write_lock:
            index = self._read_index(force=True)
            if voice_id not in index:
                raise _voice_id_not_found(voice_id)
            del index[voice_id]
            self._write_index(index)
        with self._cache_guard:
            self._tensor_cache.pop(voice_id, None)
        # The index no longer names it, so a crash here leaves only an unreferenced folder.
        shutil.rmtree(self._voices_dir / voice_id, ignore_errors=True)

    # Internals -------------------------------------------------------------------------------------

    def _read_index(self, *, force: bool = False) -> dict[str, VoiceRecord]:
        try:
            stat = self._index_path.stat()
        except FileNotFoundError:
            return {}
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._cache_guard:
            if not force and self._index_cache is not None and self._index_cache[0] == signature:
                return dict(self._index_cache[1])
        raw = json.loads(self._index_path.read_text())
        index = {entry["id"]: VoiceRecord(**entry) for entry in raw["voices"]}
        with self._cache_guard:
            self._index_cache = (signature, index)
        return dict(index)

    def _write_index(self, index: dict[str, VoiceRecord]) -> None:
        body = {"version": 1, "voices": [asdict(record) for record in index.values()]}
        temporary = self.root / f".index.{os.getpid()}.{threading.get_ident()}.tmp"
        _write_durably(temporary, json.dumps(body, indent=1).encode())
        os.replace(temporary, self._index_path)
        _fsync_dir(self.root)

    def _remove_stale_staging(self) -> None:
        cutoff = time.time() - _STALE_STAGING_SECONDS
        for leftover in self._staging_dir.iterdir():
            try:
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover, ignore_errors=True)
            except FileNotFoundError:
                continue


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
