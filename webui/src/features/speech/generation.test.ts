import { describe, expect, it } from "vitest";

import { cancelGeneration, inputProblem, startGeneration } from "@/features/speech/generation";
import { useNotifications } from "@/lib/notifications";
import { useStudioStore } from "@/lib/store";
import { installFakeServer, openAIError, speechStream } from "@/testing/fake-server";

const store = () => useStudioStore.getState();

describe("startGeneration", () => {
  it("streams the draft into a new session with audio and metrics", async () => {
    const { requests } = installFakeServer({
      "POST /v1/audio/speech": () => speechStream([new Uint8Array(24_000), new Uint8Array(24_000)]),
    });
    store().setDraftText("Hello world");
    store().setParam("exaggeration", 0.9);

    await startGeneration();

    const body = await requests[0].json();
    expect(body).toMatchObject({ input: "Hello world", voice: "default", stream_format: "sse", response_format: "pcm", exaggeration: 0.9 });
    expect(Number.isInteger(body.seed)).toBe(true);
    const [session] = store().sessions;
    expect(session).toMatchObject({ text: "Hello world", status: "done", error: null });
    expect(session.params.seed).toBe(body.seed);
    expect(session.audioChunks).toHaveLength(2);
    expect(session.metrics?.durationSeconds).toBe(1);
    expect(session.metrics?.timeToFirstAudioMs).toBeGreaterThanOrEqual(0);
    expect(session.metrics?.realTimeFactor).toBeGreaterThanOrEqual(0);
    expect(store().isGenerating).toBe(false);
  });

  it("uses a fixed seed when one is set", async () => {
    const { requests } = installFakeServer({ "POST /v1/audio/speech": () => speechStream([new Uint8Array(4)]) });
    store().setDraftText("Seeded");
    store().setParam("seed", 99);
    await startGeneration();
    expect((await requests[0].json()).seed).toBe(99);
  });

  it("shows the server's error in a toast and marks the session failed", async () => {
    installFakeServer({
      "POST /v1/audio/speech": () => openAIError(400, "voice 'ghost' not found", "voice"),
    });
    store().setDraftText("Hi");
    await startGeneration();

    expect(store().sessions[0]).toMatchObject({ status: "error", error: "voice 'ghost' not found" });
    expect(useNotifications.getState().toasts).toEqual([
      expect.objectContaining({ kind: "error", title: "Generation failed", message: "voice 'ghost' not found" }),
    ]);
    expect(store().isGenerating).toBe(false);
  });

  it("does not send text that is empty or over the limit", async () => {
    const { fetchMock } = installFakeServer({});
    store().setDraftText("x".repeat(4097));
    await startGeneration();
    store().setDraftText("   ");
    await startGeneration();
    expect(fetchMock).not.toHaveBeenCalled();
    expect(store().sessions).toEqual([]);
  });

  it("cancelling ends the session as cancelled, without an error toast", async () => {
    installFakeServer({
      "POST /v1/audio/speech": (request) =>
        new Promise<Response>((_, reject) =>
          request.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))),
        ),
    });
    store().setDraftText("Long text");
    const running = startGeneration();
    await new Promise((resolve) => setTimeout(resolve, 0));
    cancelGeneration();
    await running;
    expect(store().sessions[0].status).toBe("cancelled");
    expect(useNotifications.getState().toasts).toEqual([]);
  });
});

describe("inputProblem", () => {
  it("explains the limit with both counts", () => {
    expect(inputProblem("a".repeat(4097))).toBe("Text is 4,097 characters; the limit is 4,096.");
    expect(inputProblem("a".repeat(4096))).toBeNull();
  });
});
