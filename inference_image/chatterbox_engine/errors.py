"""Typed, user-facing engine errors.

Every error subclasses `EngineError`, itself a `ValueError`, so callers (the server) can map the whole
family to a 4xx response in one place while still telling the kinds apart.
"""


class EngineError(ValueError):
    """Base class of every error the engine raises for bad input or bad files."""


class InvalidTextError(EngineError):
    """The text to synthesise is empty, too long or contains characters the model cannot read."""


class InvalidAudioError(EngineError):
    """Reference audio is unusable: too short, silent, non-finite, wrong rank or sample rate."""


class InvalidParameterError(EngineError):
    """A generation parameter is outside its valid range; `param` names it where one argument is at fault."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class CheckpointError(EngineError):
    """A checkpoint cannot be found or does not match the expected layout."""


class EngineStopped(RuntimeError):
    """The engine's loop is shutting down (`Engine.close`) or died: the request cannot run now."""
