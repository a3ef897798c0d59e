import { describe, expect, it, vi } from "vitest";

import { ChatterboxAPIError, createChatterboxAPI, type SpeechStreamEvent } from "@/lib/api";
import { bytesToBase64 } from "@/utils/pcm";

type Handler = (url: string, init: RequestInit) => Response | Promise<Response>;

function clientWith(handler: Handler, apiKey = "") {
  const fetch = vi.fn((input: RequestInfo | URL, init?: RequestInit) => Promise.resolve(handler(String(input), init ?? {})));
  return { api: createChatterboxAPI({ baseUrl: "http://tts.test/", apiKey, fetch }), fetch };
}

function sseResponse(chunks: string[]): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
  return new Response(body, { headers: { "Content-Type": "text/event-stream; charset=utf-8" } });
}

const request = { model: "chatterbox", input: "Hello there", voice: "default" };

async function drain(stream: AsyncGenerator<SpeechStreamEvent>): Promise<SpeechStreamEvent[]> {
  const events: SpeechStreamEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

describe("chatterboxAPI.synthesizeStream", () => {
  it("posts an SSE request and yields decoded PCM chunks then done", async () => {
    const chunk = bytesToBase64(new Uint8Array([1, 0, 2, 0]));
    const { api, fetch } = clientWith(() =>
      sseResponse([
        `data: {"type":"speech.audio.delta","audio":"${chunk}"}\n\n`,
        'data: {"type":"speech.audio.done","usage":{"input_tokens":3,"output_tokens":5,"total_tokens":8}}\n\n',
      ]),
    );

    const events = await drain(api.synthesizeStream({ ...request, seed: 7 }));

    expect(events).toEqual([
      { type: "delta", audio: chunk, pcm: new Uint8Array([1, 0, 2, 0]) },
      { type: "done", usage: { input_tokens: 3, output_tokens: 5, total_tokens: 8 } },
    ]);
    const [url, init] = fetch.mock.calls[0];
    expect(url).toBe("http://tts.test/v1/audio/speech");
    expect(JSON.parse(init?.body as string)).toEqual({ ...request, seed: 7, stream_format: "sse" });
  });

  it("throws the server's message when an error event arrives mid-stream", async () => {
    const { api } = clientWith(() =>
      sseResponse([
        'data: {"type":"speech.audio.delta","audio":"AAA="}\n\n',
        'data: {"type":"error","error":{"message":"engine crashed","type":"server_error"}}\n\n',
      ]),
    );
    await expect(drain(api.synthesizeStream(request))).rejects.toMatchObject({
      name: "ChatterboxAPIError",
      message: "engine crashed",
      type: "server_error",
    });
  });

  it("refuses a stream that stops before speech.audio.done", async () => {
    const { api } = clientWith(() => sseResponse(['data: {"type":"speech.audio.delta","audio":"AAA="}\n\n']));
    await expect(drain(api.synthesizeStream(request))).rejects.toThrow(/ended before it was complete/);
  });

  it("refuses a reply that is not an event stream", async () => {
    const { api } = clientWith(() => new Response("RIFF....", { headers: { "Content-Type": "audio/wav" } }));
    await expect(drain(api.synthesizeStream(request))).rejects.toThrow(/Expected an event stream/);
  });

  it("surfaces a malformed event as a typed error", async () => {
    const { api } = clientWith(() => sseResponse(["data: {not json\n\n"]));
    await expect(drain(api.synthesizeStream(request))).rejects.toBeInstanceOf(ChatterboxAPIError);
  });
});

describe("chatterboxAPI errors", () => {
  it("carries the OpenAI-shaped error body's message, type, param and code", async () => {
    const { api } = clientWith(() =>
      Response.json(
        { error: { message: "input is longer than 4096 characters", type: "invalid_request_error", param: "input", code: "too_long" } },
        { status: 400 },
      ),
    );
    const error = await api.synthesize(request).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ChatterboxAPIError);
    expect(error).toMatchObject({
      status: 400,
      message: "input is longer than 4096 characters",
      type: "invalid_request_error",
      param: "input",
      code: "too_long",
    });
  });

  it("falls back to the status line for a non-JSON error page", async () => {
    const { api } = clientWith(() => new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway" }));
    await expect(api.getModels()).rejects.toThrow("Request failed with status 502 Bad Gateway");
  });

  it("reports an unreachable server as a network error", async () => {
    const api = createChatterboxAPI({ fetch: () => Promise.reject(new TypeError("Failed to fetch")) });
    await expect(api.getSavedVoices()).rejects.toMatchObject({ status: 0, type: "network_error" });
  });

  it("lets an abort through unchanged", async () => {
    const abort = new DOMException("aborted", "AbortError");
    const api = createChatterboxAPI({ fetch: () => Promise.reject(abort) });
    await expect(api.getModels()).rejects.toBe(abort);
  });
});

describe("chatterboxAPI endpoints", () => {
  it("sends the bearer key, and a key set later replaces it", async () => {
    const { api, fetch } = clientWith(() => Response.json({ object: "list", data: [{ id: "chatterbox" }] }), "k1");
    expect(await api.getModels()).toEqual([{ id: "chatterbox" }]);
    api.setApiKey(" k2 ");
    await api.getModels();
    const auth = fetch.mock.calls.map(([, init]) => new Headers(init?.headers).get("Authorization"));
    expect(auth).toEqual(["Bearer k1", "Bearer k2"]);
  });

  it("lists saved voices", async () => {
    const { api } = clientWith(() => Response.json({ voices: [{ id: "default", name: "default" }] }));
    expect(await api.getSavedVoices()).toEqual([{ id: "default", name: "default" }]);
  });

  it("clones a voice with a multipart name and audio_sample", async () => {
    const { api, fetch } = clientWith(() =>
      Response.json({ object: "audio.voice", id: "voice_1", name: "Ada", created_at: 1 }, { status: 201 }),
    );
    const created = await api.cloneVoice("Ada", new File([new Uint8Array(8)], "ada.wav", { type: "audio/wav" }));
    expect(created.id).toBe("voice_1");
    const form = fetch.mock.calls[0][1]?.body as FormData;
    expect(form.get("name")).toBe("Ada");
    expect((form.get("audio_sample") as File).name).toBe("ada.wav");
  });

  it("deletes a voice by escaped id", async () => {
    const { api, fetch } = clientWith(() => new Response(null, { status: 204 }));
    await api.deleteVoice("a/b");
    expect(fetch.mock.calls[0][0]).toBe("http://tts.test/v1/audio/voices/a%2Fb");
    expect(fetch.mock.calls[0][1]?.method).toBe("DELETE");
  });

  it("returns whole-file audio as a blob", async () => {
    const { api } = clientWith(() => new Response(new Uint8Array([9, 9]), { headers: { "Content-Type": "audio/mpeg" } }));
    const blob = await api.synthesize({ ...request, response_format: "mp3" });
    expect(blob.size).toBe(2);
  });
});
