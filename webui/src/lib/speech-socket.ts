/**
 * The client side of `WS /v1/audio/speech/stream`: text goes in as JSON messages whenever it
 * arrives, audio comes back as binary frames (PCM16 24 kHz for `response_format: "pcm"`), each
 * spoken segment is reported, and the server ends with `speech.audio.done` and a normal close.
 * Transport only: callers get events and errors, never UI state. Messages sent before the socket
 * opens are queued.
 */
import type { SpeechRequest, SpeechUsage } from "@/lib/api";

export type SpeechSocketEvent =
  | { type: "audio"; pcm: Uint8Array<ArrayBuffer> }
  | { type: "segment"; text: string; startSample: number; endSample: number }
  | { type: "done"; usage: SpeechUsage | null };

export interface SpeechSocketError {
  message: string;
  type: string | null;
  code: string | null;
}

export interface SpeechSocketHandlers {
  onEvent: (event: SpeechSocketEvent) => void;
  /** Called once when the session ends without `done`: a server error, or the connection dropped. */
  onError: (error: SpeechSocketError) => void;
}

export interface SpeechSocket {
  append: (text: string) => void;
  flush: () => void;
  /** End of text: the rest is spoken, then `done` arrives. */
  finish: () => void;
  /** Abandons the session (the server stops at its next chunk); no further callbacks. */
  close: () => void;
}

/** The socket URL for an API base URL ("" = same origin, "/api" = a path prefix, or an origin). */
export function speechSocketUrl(baseUrl: string, apiKey: string, origin = globalThis.location?.href ?? "http://localhost/"): string {
  const url = new URL(`${baseUrl}/v1/audio/speech/stream`, origin);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  // Browsers cannot set an Authorization header on a WebSocket; the server also reads ?api_key=.
  if (apiKey) url.searchParams.set("api_key", apiKey);
  return url.toString();
}

export function openSpeechSocket(url: string, settings: Omit<SpeechRequest, "input">, handlers: SpeechSocketHandlers): SpeechSocket {
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  const outbox: string[] = [];
  let settled = false;

  const send = (message: object) => {
    const text = JSON.stringify(message);
    if (socket.readyState === WebSocket.OPEN) socket.send(text);
    else outbox.push(text);
  };
  const fail = (error: SpeechSocketError) => {
    if (settled) return;
    settled = true;
    handlers.onError(error);
  };

  socket.onopen = () => {
    for (const text of outbox.splice(0)) socket.send(text);
  };
  socket.onmessage = (message) => {
    if (settled) return;
    if (message.data instanceof ArrayBuffer) {
      handlers.onEvent({ type: "audio", pcm: new Uint8Array(message.data) });
      return;
    }
    const event = JSON.parse(String(message.data)) as Record<string, unknown>;
    if (event.type === "speech.segment.done") {
      handlers.onEvent({
        type: "segment",
        text: String(event.text),
        startSample: Number(event.start_sample),
        endSample: Number(event.end_sample),
      });
    } else if (event.type === "speech.audio.done") {
      settled = true;
      handlers.onEvent({ type: "done", usage: (event.usage as SpeechUsage | undefined) ?? null });
    } else if (event.type === "error") {
      const error = (event.error ?? {}) as Record<string, unknown>;
      fail({
        message: typeof error.message === "string" ? error.message : "Speech generation failed",
        type: typeof error.type === "string" ? error.type : null,
        code: typeof error.code === "string" ? error.code : null,
      });
    }
  };
  socket.onclose = (close) => {
    const reason = close.reason ? `: ${close.reason}` : "";
    fail({ message: `The connection closed before the speech was complete (code ${close.code}${reason})`, type: "network_error", code: null });
  };

  send({ type: "session.update", session: settings });
  return {
    append: (text) => send({ type: "input.append", text }),
    flush: () => send({ type: "input.flush" }),
    finish: () => send({ type: "input.done" }),
    close: () => {
      settled = true;
      socket.close();
    },
  };
}
