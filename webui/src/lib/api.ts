/**
 * Typed client for the chatterbox-server public API (OpenAI-compatible speech + voices).
 *
 * Transport only: it never touches UI state. Every failure surfaces as a `ChatterboxAPIError`
 * carrying the server's own message (from the OpenAI-shaped `{"error": {...}}` body) so callers
 * can show it as-is; aborts surface as the platform's `AbortError`.
 */
import { env } from "@/config/env";
import { base64ToBytes } from "@/utils/pcm";
import { openSpeechSocket, speechSocketUrl, type SpeechSocket, type SpeechSocketHandlers } from "@/lib/speech-socket";
import { readServerSentEvents } from "@/lib/sse";

export const MAX_INPUT_CHARS = 4096;
export const RESPONSE_FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"] as const;
export type ResponseFormat = (typeof RESPONSE_FORMATS)[number];

/** The media type of a file in each response format (for Blobs the studio plays and saves). */
export const MIME_TYPES: Record<ResponseFormat, string> = {
  mp3: "audio/mpeg",
  opus: "audio/ogg",
  aac: "audio/aac",
  flac: "audio/flac",
  wav: "audio/wav",
  pcm: "audio/L16",
};

export interface SpeechRequest {
  model: string;
  input: string;
  voice: string;
  response_format?: ResponseFormat;
  speed?: number;
  exaggeration?: number;
  cfg_weight?: number;
  temperature?: number;
  top_p?: number;
  min_p?: number;
  repetition_penalty?: number;
  seed?: number;
  /** ISO 639-1 code; only the multilingual model speaks more than `en`. */
  language?: string;
}

export interface SpeechUsage {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
}

/** Voice conversion: the recording's words spoken again in `voice` (a library voice's id or name). */
export interface ConversionRequest {
  voice: string;
  response_format?: ResponseFormat;
  seed?: number;
}

export type SpeechStreamEvent =
  | { type: "delta"; audio: string; pcm: Uint8Array }
  | { type: "done"; usage: SpeechUsage | null };

export interface Voice {
  id: string;
  name: string;
  created_at?: number;
  [extra: string]: unknown;
}

export interface CreatedVoice {
  object: "audio.voice";
  id: string;
  name: string;
  created_at: number;
}

export interface Model {
  id: string;
  object?: string;
  created?: number;
  owned_by?: string;
  /** english, multilingual, turbo or nano (Chatterbox servers only). */
  variant?: string;
  /** The multilingual release (v2 or v3); null for the other variants. */
  version?: string | null;
  /** Paralinguistic tags such as [laugh] the model voices (Turbo, Nano); other models drop them. */
  paralinguistic_tags?: string[];
  /** Language code -> name the model speaks. */
  languages?: Record<string, string>;
  /** Request fields this model accepts but ignores (e.g. Turbo: cfg_weight). */
  ignored_parameters?: string[];
  /** Request field -> the value the model uses when a request leaves it out (e.g. Turbo: top_p 0.95). */
  defaults?: Record<string, number>;
}

export class ChatterboxAPIError extends Error {
  readonly status: number;
  readonly type: string | null;
  readonly param: string | null;
  readonly code: string | null;

  constructor(
    message: string,
    details: { status: number; type?: string | null; param?: string | null; code?: string | null },
  ) {
    super(message);
    this.name = "ChatterboxAPIError";
    this.status = details.status;
    this.type = details.type ?? null;
    this.param = details.param ?? null;
    this.code = details.code ?? null;
  }
}

export interface ChatterboxAPIOptions {
  /** Origin (and optional path prefix) of the server; "" means same origin. */
  baseUrl?: string;
  apiKey?: string;
  fetch?: typeof fetch;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export type ChatterboxAPI = ReturnType<typeof createChatterboxAPI>;

export function createChatterboxAPI(options: ChatterboxAPIOptions = {}) {
  const baseUrl = (options.baseUrl ?? "").replace(/\/+$/, "");
  // Resolved at call time so tests (and late polyfills) can swap the global fetch.
  const doFetch: typeof fetch = (...args) => (options.fetch ?? globalThis.fetch)(...args);
  let apiKey = options.apiKey ?? "";

  async function send(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
    let response: Response;
    try {
      response = await doFetch(`${baseUrl}${path}`, { ...init, headers });
    } catch (error) {
      if (isAbortError(error)) throw error;
      throw new ChatterboxAPIError(`Could not reach the server (${describe(error)})`, {
        status: 0,
        type: "network_error",
      });
    }
    if (!response.ok) throw await errorFromResponse(response);
    return response;
  }

  async function sendJson<T>(path: string, init: RequestInit = {}): Promise<T> {
    const response = await send(path, init);
    try {
      return (await response.json()) as T;
    } catch {
      throw new ChatterboxAPIError(`The server sent an unreadable reply to ${path}`, {
        status: response.status,
        type: "invalid_response",
      });
    }
  }

  function speechInit(request: SpeechRequest, streamFormat: "audio" | "sse", signal?: AbortSignal) {
    return {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...request, stream_format: streamFormat }),
      signal,
    } satisfies RequestInit;
  }

  return {
    setApiKey(key: string) {
      apiKey = key.trim();
    },

    /** Whole-file synthesis in `request.response_format` (default mp3). */
    async synthesize(request: SpeechRequest, { signal }: RequestOptions = {}): Promise<Blob> {
      const response = await send("/v1/audio/speech", speechInit(request, "audio", signal));
      return response.blob();
    },

    /**
     * Streams base64 PCM16 chunks as the server produces them (`stream_format: "sse"`), ending
     * with one `done` event. Throws if the server reports an error mid-stream or the stream stops
     * before `speech.audio.done`.
     */
    async *synthesizeStream(
      request: SpeechRequest,
      { signal }: RequestOptions = {},
    ): AsyncGenerator<SpeechStreamEvent> {
      const response = await send("/v1/audio/speech", speechInit(request, "sse", signal));
      const contentType = response.headers.get("Content-Type") ?? "";
      if (!contentType.includes("text/event-stream") || !response.body) {
        throw new ChatterboxAPIError(`Expected an event stream but got "${contentType}"`, {
          status: response.status,
          type: "invalid_response",
        });
      }
      for await (const message of readServerSentEvents(response.body)) {
        const event = parseStreamEvent(message.data);
        if (event === null) continue;
        yield event;
        if (event.type === "done") return;
      }
      throw new ChatterboxAPIError("The audio stream ended before it was complete", {
        status: response.status,
        type: "stream_incomplete",
      });
    },

    /** A live session over `WS /v1/audio/speech/stream`: text in as it is typed, PCM out per sentence. */
    openSpeechStream(settings: Omit<SpeechRequest, "input">, handlers: SpeechSocketHandlers): SpeechSocket {
      return openSpeechSocket(speechSocketUrl(baseUrl, apiKey), settings, handlers);
    },

    /** Converts a recording (any common audio format) into `request.voice`; the whole converted file. */
    async convertVoice(
      source: Blob,
      request: ConversionRequest,
      { signal, filename }: RequestOptions & { filename?: string } = {},
    ): Promise<Blob> {
      const form = new FormData();
      form.append("file", source, filename ?? (source instanceof File ? source.name : "recording.wav"));
      for (const [field, value] of Object.entries(request)) {
        if (value !== undefined) form.append(field, String(value));
      }
      const response = await send("/v1/audio/voice-conversion", { method: "POST", body: form, signal });
      return response.blob();
    },

    async getModels({ signal }: RequestOptions = {}): Promise<Model[]> {
      const body = await sendJson<{ data?: Model[] }>("/v1/models", { signal });
      return body.data ?? [];
    },

    async getSavedVoices({ signal }: RequestOptions = {}): Promise<Voice[]> {
      const body = await sendJson<{ voices?: Voice[] }>("/v1/audio/voices", { signal });
      return body.voices ?? [];
    },

    async cloneVoice(
      name: string,
      sample: Blob,
      { signal, filename }: RequestOptions & { filename?: string } = {},
    ): Promise<CreatedVoice> {
      const form = new FormData();
      form.append("name", name);
      form.append("audio_sample", sample, filename ?? (sample instanceof File ? sample.name : "sample.wav"));
      return sendJson<CreatedVoice>("/v1/audio/voices", { method: "POST", body: form, signal });
    },

    async deleteVoice(id: string, { signal }: RequestOptions = {}): Promise<void> {
      await send(`/v1/audio/voices/${encodeURIComponent(id)}`, { method: "DELETE", signal });
    },

    /** The reference recording a voice was cloned from, fetched with credentials for preview. */
    async getVoiceSample(id: string, { signal }: RequestOptions = {}): Promise<Blob> {
      const response = await send(`/v1/audio/voices/${encodeURIComponent(id)}/sample`, { signal });
      return response.blob();
    },
  };
}

function parseStreamEvent(data: string): SpeechStreamEvent | null {
  if (data.trim() === "" || data.trim() === "[DONE]") return null;
  let payload: Record<string, unknown>;
  try {
    payload = JSON.parse(data) as Record<string, unknown>;
  } catch {
    throw new ChatterboxAPIError("The server sent a malformed stream event", {
      status: 200,
      type: "invalid_response",
    });
  }
  if (payload.error !== undefined || payload.type === "error") {
    throw errorFromBody(payload, 200) ?? new ChatterboxAPIError("Speech generation failed", { status: 200 });
  }
  if (payload.type === "speech.audio.delta" && typeof payload.audio === "string") {
    return { type: "delta", audio: payload.audio, pcm: base64ToBytes(payload.audio) };
  }
  if (payload.type === "speech.audio.done") {
    return { type: "done", usage: (payload.usage as SpeechUsage | undefined) ?? null };
  }
  return null; // Unknown event types (e.g. future info events) are not ours to fail on.
}

async function errorFromResponse(response: Response): Promise<ChatterboxAPIError> {
  const text = await response.text().catch(() => "");
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON (e.g. a proxy's HTML page): fall back to the status line below.
  }
  return (
    errorFromBody(body, response.status) ??
    new ChatterboxAPIError(
      `Request failed with status ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`,
      { status: response.status },
    )
  );
}

/** Reads OpenAI-shaped `{"error": {...}}` bodies, and FastAPI's `{"detail": ...}` as a fallback. */
function errorFromBody(body: unknown, status: number): ChatterboxAPIError | null {
  if (typeof body !== "object" || body === null) return null;
  const record = body as Record<string, unknown>;
  const error = record.error;
  if (typeof error === "object" && error !== null) {
    const e = error as Record<string, unknown>;
    if (typeof e.message === "string" && e.message !== "") {
      return new ChatterboxAPIError(e.message, {
        status,
        type: asString(e.type),
        param: asString(e.param),
        code: asString(e.code),
      });
    }
  }
  if (typeof error === "string" && error !== "") return new ChatterboxAPIError(error, { status });
  if (typeof record.detail === "string") return new ChatterboxAPIError(record.detail, { status });
  return null;
}

function asString(value: unknown): string | null {
  return typeof value === "string" ? value : value == null ? null : String(value);
}

export function isAbortError(error: unknown): boolean {
  return error instanceof DOMException
    ? error.name === "AbortError"
    : (error as { name?: string } | null)?.name === "AbortError";
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The app-wide client: same origin by default, overridable with VITE_API_URL / VITE_API_KEY. */
export const chatterboxAPI = createChatterboxAPI({ baseUrl: env.apiUrl, apiKey: env.apiKey });
