"""`chatterbox-server` / `python -m chatterbox_server`: settings from env and flags, then uvicorn."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time

import uvicorn
from pydantic import ValidationError

from .config import Settings


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _is_aborted_stream(error: BaseException | None) -> bool:
    from .services.speech import StreamAborted

    if isinstance(error, BaseExceptionGroup):
        return any(_is_aborted_stream(member) for member in error.exceptions)
    return isinstance(error, StreamAborted)


class _AbortedStreamFilter(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" traceback for a stream we cut on purpose: the
    speech service has already logged one warning line saying why."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_aborted_stream(record.exc_info[1]))


_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s\"']*")


class _KeyInQueryFilter(logging.Filter):
    """Blanks `?api_key=` in log lines: browsers' speech sockets carry the key there, and uvicorn logs
    every accepted WebSocket with its query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("api_key=" in str(arg) for arg in record.args):
            record.args = tuple(_KEY_IN_QUERY.sub(r"\1REDACTED", str(arg)) for arg in record.args)
        if isinstance(record.msg, str) and "api_key=" in record.msg:
            record.msg = _KEY_IN_QUERY.sub(r"\1REDACTED", record.msg)
        return True


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_AbortedStreamFilter())
    handler.addFilter(_KeyInQueryFilter())
    if settings.log_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Library warnings (e.g. perth's pkg_resources deprecation) become log records in the same format.
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class _DrainingServer(uvicorn.Server):
    """On SIGTERM: readiness goes false at once, requests keep being served for `drain_seconds` (so the
    load balancer stops routing here), then uvicorn stops listening and lets in-flight streams finish."""

    def __init__(self, config: uvicorn.Config, settings: Settings) -> None:
        super().__init__(config)
        self._settings = settings
        self._drain_started = False

    def handle_exit(self, sig, frame) -> None:
        self.config.app.state.runtime.draining = True
        if self._drain_started or self._settings.drain_seconds == 0:
            super().handle_exit(sig, frame)
            return
        self._drain_started = True
        logging.getLogger(__name__).info("draining for %.1f s before shutdown", self._settings.drain_seconds)
        # From a signal handler only call_soon_threadsafe is safe; it schedules the delayed exit.
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(
            loop.call_later, self._settings.drain_seconds, super().handle_exit, sig, frame
        )


def read_settings(argv: list[str]) -> Settings:
    """Settings from the environment and flags; a bad value ends the process with a one-line usage error."""
    try:
        return Settings(_cli_parse_args=argv, _cli_kebab_case=True)
    except ValidationError as error:
        problems = "; ".join(_describe_setting_error(problem) for problem in error.errors())
        print(f"chatterbox-server: error: invalid setting: {problems}", file=sys.stderr)
        sys.exit(2)  # argparse's exit status for usage errors


def _describe_setting_error(problem: dict) -> str:
    field = ".".join(str(part) for part in problem.get("loc", ())) or "settings"
    names = f"--{field.replace('_', '-')} / {field.upper()}"
    return f"{names} = {problem.get('input')!r}: {problem.get('msg')}"


def main(argv: list[str] | None = None) -> None:
    settings = read_settings(argv if argv is not None else sys.argv[1:])
    configure_logging(settings)
    from .app import create_app

    # Listens at once; the model loads and warms up in the background (see create_app).
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=settings.log_level == "debug",
        lifespan="on",
        timeout_graceful_shutdown=None,
    )
    server = _DrainingServer(config, settings)
    runtime = app.state.runtime

    def stop_after_load_failure() -> None:
        server.should_exit = True

    runtime.on_load_failure = stop_after_load_failure
    server.run()
    if not server.started or runtime.failed:
        # Listening or loading failed; the reason is already logged.
        sys.exit(1)


if __name__ == "__main__":
    main()
