"""Streaming response that always closes its body iterator, so an abandoned stream frees its slot and
stops its engine work."""

from __future__ import annotations

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class AudioStreamResponse(StreamingResponse):
    def __init__(self, content, media_type: str | None = None, **kwargs) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **kwargs.pop("headers", {})}
        super().__init__(content, media_type=media_type, headers=headers, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # On disconnect Starlette cancels the sender and leaves the generator suspended; close it now.
            await self.body_iterator.aclose()
