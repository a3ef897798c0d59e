/**
 * An in-test stand-in for the HTTP layer only: a `fetch` that answers by method and path, so UI
 * code runs its real client, store and components. (The real server is exercised by the browser
 * tests in tests/webui.)
 */
import { vi } from "vitest";

import { bytesToBase64 } from "@/utils/pcm";

export type Route = (request: Request) => Response | Promise<Response>;

export function installFakeServer(routes: Record<string, Route>) {
  const requests: Request[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(new URL(String(input), "http://studio.test"), init);
    requests.push(request.clone());
    const route = routes[`${request.method} ${new URL(request.url).pathname}`];
    if (!route) return Response.json({ error: { message: "no such route", type: "not_found" } }, { status: 404 });
    init?.signal?.throwIfAborted();
    return route(request);
  });
  vi.stubGlobal("fetch", fetchMock);
  return { requests, fetchMock };
}

/** An SSE speech reply carrying `chunks` of PCM bytes, then the done event. */
export function speechStream(chunks: Uint8Array[]): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) {
        controller.enqueue(encoder.encode(`data: {"type":"speech.audio.delta","audio":"${bytesToBase64(chunk)}"}\n\n`));
      }
      controller.enqueue(
        encoder.encode('data: {"type":"speech.audio.done","usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3}}\n\n'),
      );
      controller.close();
    },
  });
  return new Response(body, { headers: { "Content-Type": "text/event-stream" } });
}

export function openAIError(status: number, message: string, param: string | null = null): Response {
  return Response.json({ error: { message, type: "invalid_request_error", param, code: null } }, { status });
}
