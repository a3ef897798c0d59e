import { describe, expect, it } from "vitest";

import { readServerSentEvents, type ServerSentEvent } from "@/lib/sse";

function streamOf(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(typeof chunk === "string" ? encoder.encode(chunk) : chunk);
      controller.close();
    },
  });
}

async function collect(chunks: (string | Uint8Array)[]): Promise<ServerSentEvent[]> {
  const events: ServerSentEvent[] = [];
  for await (const event of readServerSentEvents(streamOf(chunks))) events.push(event);
  return events;
}

describe("readServerSentEvents", () => {
  it("yields one event per blank-line-terminated block", async () => {
    const events = await collect(['data: {"a":1}\n\n', 'data: {"b":2}\n\n']);
    expect(events).toEqual([
      { event: "message", data: '{"a":1}' },
      { event: "message", data: '{"b":2}' },
    ]);
  });

  it("reassembles lines split across network chunks", async () => {
    const events = await collect(["da", 'ta: {"long":', '"value"}', "\n", "\n"]);
    expect(events).toEqual([{ event: "message", data: '{"long":"value"}' }]);
  });

  it("handles CRLF and a CR split from its LF", async () => {
    const events = await collect(["data: one\r", "\n\r\ndata: two\r\r"]);
    expect(events.map((e) => e.data)).toEqual(["one", "two"]);
  });

  it("joins multi-line data, skips comments and keeps event names", async () => {
    const events = await collect([": keep-alive\n", "event: custom\ndata: first\ndata: second\n\n"]);
    expect(events).toEqual([{ event: "custom", data: "first\nsecond" }]);
  });

  it("decodes a multi-byte character split between chunks", async () => {
    const bytes = new TextEncoder().encode("data: héllo\n\n");
    const cut = 8; // inside the two bytes of "é"
    const events = await collect([bytes.slice(0, cut), bytes.slice(cut)]);
    expect(events).toEqual([{ event: "message", data: "héllo" }]);
  });

  it("delivers a final event that lacks the closing blank line", async () => {
    const events = await collect(["data: last"]);
    expect(events).toEqual([{ event: "message", data: "last" }]);
  });
});
