"""Named API keys: who is calling, what each key used, and its optional per-pod limits.

API_KEYS_FILE is a YAML mapping of names to keys (`team-a: sk-...`), or the older plain list of one key
per line, where each key is named `key-` plus the first 8 hex digits of its SHA-256. API_KEY_LIMITS_FILE
(optional) maps names to limits, with `default` for every key without its own entry. Both files are read
on every request and parsed again when their bytes change: Kubernetes updates a mounted Secret or
ConfigMap by swapping a `..data` symlink, and opening the path anew is what follows the swap. A file that
fails to parse keeps the last good version in force (and an unreadable keys file at start-up lets nobody
in). Names, never keys, appear in metrics, logs and errors.

Limits hold per key per pod (the state lives in this process): concurrent requests, requests in any
60-second window, and input characters per UTC day. Only this module and the event loop touch the state.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import KeyLimitExceeded, Unauthorized
from .metrics import ServerMetrics

if TYPE_CHECKING:
    from .services.speech import SpeechUsage

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Names become Prometheus label values and Secret data keys: the Kubernetes data-key alphabet, bounded.
KEY_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
DEFAULT_LIMITS_ENTRY = "default"
_LEGACY_NAME_PREFIX = "key-"
# A line like `team-a: sk-...` (a name, a colon, then a space or the end): the file is a YAML mapping.
_MAPPING_LINE = re.compile(r"^\s*[^\s:#][^\s:]*\s*:(\s|$)")
_SECONDS_PER_DAY = 86_400
_WINDOW_S = 60.0


class KeyFileError(ValueError):
    """A keys or limits file that cannot be used; the message never quotes a key."""


class KeyLimits(BaseModel):
    """A key's limits on one pod; None (or left out) means unlimited."""

    model_config = ConfigDict(extra="forbid")

    concurrent_requests: int | None = Field(None, ge=1, description="Speech requests in progress at once.")
    requests_per_minute: int | None = Field(None, ge=1, description="Speech requests in any 60 s.")
    input_characters_per_day: int | None = Field(
        None, ge=1, description="Input characters per UTC day (00:00 to 00:00)."
    )


UNLIMITED = KeyLimits()


def legacy_key_name(key: str) -> str:
    """The name of a key given without one: stable, short, and useless for guessing the key."""
    return _LEGACY_NAME_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:8]


def parse_keys(text: str) -> dict[str, str]:
    """name -> key, from a YAML mapping or from one key per line (blank lines and `#` comments skipped)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not any(_MAPPING_LINE.match(line) for line in lines):
        return _unique({legacy_key_name(line.strip()): line.strip() for line in lines})
    keys: dict[str, str] = {}
    for name, key in _named_entries(text, "names to keys (`team-a: sk-...`)").items():
        if name == DEFAULT_LIMITS_ENTRY:
            raise KeyFileError(f"{name!r} is reserved (the limits file's entry for every key); rename it")
        if not isinstance(key, str) or not key.strip():
            raise KeyFileError(f"the key of {name!r} must be a non-empty string (quote it in YAML)")
        keys[name] = key.strip()
    return _unique(keys)


def parse_limits(text: str) -> tuple[KeyLimits, dict[str, KeyLimits]]:
    """(default limits, name -> limits); a key's own entry overrides the default field by field."""
    entries: dict[str, KeyLimits] = {}
    for name, value in _named_entries(text, "key names to limits").items():
        try:
            entries[name] = KeyLimits.model_validate(value or {})
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in (name, *first["loc"]))
            raise KeyFileError(f"{where}: {first['msg']}") from None
    default = entries.pop(DEFAULT_LIMITS_ENTRY, UNLIMITED)
    inherited = default.model_dump(exclude_unset=True)
    return default, {
        name: KeyLimits(**{**inherited, **own.model_dump(exclude_unset=True)})
        for name, own in entries.items()
    }


def _named_entries(text: str, what: str) -> dict[str, object]:
    """A YAML mapping whose keys are checked key names; an empty file is an empty mapping."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        # PyYAML's message quotes the offending line, which may hold a key: give the position only.
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise KeyFileError(f"not a valid YAML mapping of {what}{where}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise KeyFileError(f"expected a YAML mapping of {what}")
    entries = {str(name): value for name, value in document.items()}
    for name in entries:
        _check_name(name)
    return entries


def _check_name(name: str) -> None:
    if not KEY_NAME.fullmatch(name):
        raise KeyFileError(
            f"key name {name[:64]!r} is not 1-63 letters, digits, '.', '_' or '-' (starting and ending "
            "with a letter or digit)"
        )


def _unique(keys: dict[str, str]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for name, key in keys.items():
        if key in owners:
            raise KeyFileError(f"{owners[key]!r} and {name!r} have the same key; give each name its own")
        owners[key] = name
    return keys


class WatchedFile(Generic[T]):
    """A small mounted file, parsed again whenever its bytes change; a bad version keeps the last good one."""

    def __init__(self, path: Path, parse: Callable[[str], T], initial: T, what: str) -> None:
        self.path = path
        self._parse = parse
        self._what = what
        self._value = initial
        self._data: bytes | None = None
        self._read_error: str | None = None

    def read(self) -> T:
        try:
            data = self.path.read_bytes()
        except OSError as error:
            if str(error) != self._read_error:  # once per distinct problem, not once per request
                self._read_error = str(error)
                logger.error("cannot read %s %s (%s); keeping the last version read", self._what, self.path,
                             error.strerror or error)  # fmt: skip
            return self._value
        self._read_error = None
        if data == self._data:
            return self._value
        self._data = data
        try:
            self._value = self._parse(data.decode())
            logger.info("loaded %s %s", self._what, self.path)
        except (KeyFileError, UnicodeDecodeError) as error:
            logger.error("ignoring the new %s %s: %s; keeping the last good version", self._what, self.path,
                         error)  # fmt: skip
        return self._value


@dataclass
class _KeyState:
    """What one key is doing on this pod."""

    active: int = 0
    admitted_at: deque[float] = field(default_factory=deque)  # within the last minute
    day: int = -1  # UTC day number of `characters`
    characters: int = 0


class ApiKeys:
    """The server's keys, their limits and their usage; `enabled` is false when no key is configured."""

    def __init__(
        self,
        *,
        inline_keys: str,
        keys_file: Path | None,
        limits_file: Path | None,
        metrics: ServerMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        inline = [key.strip() for key in inline_keys.split(",") if key.strip()]
        self._inline = _unique({legacy_key_name(key): key for key in inline})
        self._keys_file = WatchedFile(keys_file, parse_keys, {}, "API keys file") if keys_file else None
        self._limits_file = (
            WatchedFile(limits_file, parse_limits, (UNLIMITED, {}), "API key limits file")
            if limits_file
            else None
        )
        self.enabled = bool(self._inline) or keys_file is not None
        self._metrics = metrics
        self._clock = clock
        self._states: dict[str, _KeyState] = {}
        self._names_by_digest: dict[bytes, str] = {}
        self._seen: dict[str, str] | None = None
        self._refresh()

    def authenticate(self, offered: str) -> str | None:
        """The name of key `offered` (None when the server has no keys); 401 when it is missing or unknown.
        For any transport: HTTP's Bearer header, a WebSocket's header or query parameter."""
        if not self.enabled:
            return None
        if not offered:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        name = self.identify(offered)
        if name is None:
            raise Unauthorized("invalid API key", code="invalid_api_key")
        return name

    def identify(self, offered: str) -> str | None:
        """The name of the key `offered`, or None. Compares digests, so timing says nothing about the keys."""
        self._refresh()
        return self._names_by_digest.get(hashlib.sha256(offered.encode()).digest())

    def limits_for(self, name: str) -> KeyLimits:
        if self._limits_file is None:
            return UNLIMITED
        default, by_name = self._limits_file.read()
        return by_name.get(name, default)

    def admit(self, name: str | None, *, input_characters: int) -> KeyUsage:
        """Counts one request of key `name` against its limits, or raises `KeyLimitExceeded` (429).

        The returned usage holds a concurrency place until `release()`; its characters stay charged to the
        day only if `record()` reports that the request made audio. `name` None (no keys): no accounting."""
        if name is None:
            return KeyUsage(self, None, 0)
        limits = self.limits_for(name)
        now = self._clock()
        state = self._states.setdefault(name, _KeyState())
        while state.admitted_at and state.admitted_at[0] <= now - _WINDOW_S:
            state.admitted_at.popleft()
        today = int(now // _SECONDS_PER_DAY)
        if state.day != today:
            state.day, state.characters = today, 0
        if limits.concurrent_requests is not None and state.active >= limits.concurrent_requests:
            self._refuse(name, "concurrent_requests", 1,
                         f"has {state.active} requests in progress, its limit of concurrent requests "
                         f"(concurrent_requests={limits.concurrent_requests}); retry when one finishes")  # fmt: skip
        if limits.requests_per_minute is not None and len(state.admitted_at) >= limits.requests_per_minute:
            wait = math.ceil(state.admitted_at[0] + _WINDOW_S - now)
            self._refuse(name, "requests_per_minute", wait,
                         f"reached its limit of {limits.requests_per_minute} requests per minute "
                         f"(requests_per_minute={limits.requests_per_minute}); retry in {max(1, wait)} s")  # fmt: skip
        budget = limits.input_characters_per_day
        if budget is not None and state.characters + input_characters > budget:
            wait = math.ceil((today + 1) * _SECONDS_PER_DAY - now)
            self._refuse(name, "input_characters_per_day", wait,
                         f"would pass its limit of {budget} input characters per day "
                         f"(input_characters_per_day={budget}): {state.characters} used today, this request "
                         f"has {input_characters}; the count restarts at 00:00 UTC")  # fmt: skip
        state.active += 1
        state.admitted_at.append(now)
        state.characters += input_characters
        return KeyUsage(self, name, input_characters, day=today)

    def _refuse(self, name: str, limit: str, retry_after_s: float, reason: str) -> None:
        self._metrics.key_limit_rejections.labels(key=name, limit=limit).inc()
        raise KeyLimitExceeded(
            f"API key {name!r} {reason}. Limits apply per server pod.",
            retry_after_s=max(1, math.ceil(retry_after_s)),
        )

    def _refresh(self) -> None:
        keys = {**self._inline, **(self._keys_file.read() if self._keys_file else {})}
        if keys == self._seen:
            return
        self._seen = keys
        self._names_by_digest = {hashlib.sha256(key.encode()).digest(): name for name, key in keys.items()}
        for name in keys:  # series exist from the start, so rate() sees a key's first request
            self._metrics.start_key_series(name)

    def _finish(self, usage: KeyUsage) -> None:
        state = self._states[usage.name]  # type: ignore[index]
        state.active -= 1
        if not usage.recorded and state.day == usage.day:
            state.characters -= usage.input_characters  # no audio: nothing to charge


class KeyUsage:
    """One admitted request of one key: `record()` what it used, `release()` once when it is over."""

    def __init__(self, keys: ApiKeys, name: str | None, input_characters: int, day: int = -1) -> None:
        self.name = name
        self.input_characters = input_characters
        self.day = day
        self.recorded = False
        self._keys = keys
        self._released = False

    def record(self, used: SpeechUsage) -> None:
        """Called once when the request's audio ends (finished or cut short): what it made is charged."""
        if self.name is None:
            return
        self.recorded = True
        self._keys._metrics.record_key_usage(
            self.name,
            input_characters=used.input_characters,
            audio_seconds=used.audio_seconds,
            output_tokens=used.output_tokens,
        )

    def release(self) -> None:
        if self.name is not None and not self._released:
            self._released = True
            self._keys._finish(self)
