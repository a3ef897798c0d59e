import { describe, expect, it, vi } from "vitest";

import { selectIsGenerating, useSessionsStore } from "@/features/sessions/stores/sessions-store";
import { inputProblem, useGenerationStore } from "@/features/speech/stores/generation-store";
import { useNotifications } from "@/stores/notifications-store";
import { useSettingsStore } from "@/stores/settings-store";
import { installFakeServer, openAIError, speechStream } from "@/testing/fake-server";

const generation = () => useGenerationStore.getState();
const sessions = () => useSessionsStore.getState();

describe("generate", () => {
  it("streams the draft into a new session with audio and metrics", async () => {
    const { requests } = installFakeServer({
      "POST /v1/audio/speech": () => speechStream([new Uint8Array(24_000), new Uint8Array(24_000)]),
    });
    generation().setDraftText("Hello world");
    useSettingsStore.getState().setParam("exaggeration", 0.9);

    await generation().generate();

    const body = await requests[0].json();
    expect(body).toMatchObject({ input: "Hello world", voice: "default", stream_format: "sse", response_format: "pcm", exaggeration: 0.9 });
    expect(Number.isInteger(body.seed)).toBe(true);
    expect(body).not.toHaveProperty("top_p"); // not moved: the model's own default applies
    const [session] = sessions().sessions;
    expect(session).toMatchObject({ text: "Hello world", status: "done", error: null });
    expect(session.params.seed).toBe(body.seed);
    expect(session.audioChunks).toHaveLength(2);
    expect(session.metrics?.durationSeconds).toBe(1);
    expect(session.metrics?.timeToFirstAudioMs).toBeGreaterThanOrEqual(0);
    expect(session.metrics?.realTimeFactor).toBeGreaterThanOrEqual(0);
    expect(selectIsGenerating(sessions())).toBe(false);
  });

  it("uses a fixed seed when one is set", async () => {
    const { requests } = installFakeServer({ "POST /v1/audio/speech": () => speechStream([new Uint8Array(4)]) });
    generation().setDraftText("Seeded");
    useSettingsStore.getState().setParam("seed", 99);
    await generation().generate();
    expect((await requests[0].json()).seed).toBe(99);
  });

  it("shows the server's error in a toast and marks the session failed", async () => {
    installFakeServer({
      "POST /v1/audio/speech": () => openAIError(400, "voice 'ghost' not found", "voice"),
    });
    generation().setDraftText("Hi");
    await generation().generate();

    expect(sessions().sessions[0]).toMatchObject({ status: "error", error: "voice 'ghost' not found" });
    expect(useNotifications.getState().toasts).toEqual([
      expect.objectContaining({ kind: "error", title: "Generation failed", message: "voice 'ghost' not found" }),
    ]);
    expect(selectIsGenerating(sessions())).toBe(false);
  });

  it("does not send text that is empty or over the limit", async () => {
    const { fetchMock } = installFakeServer({});
    generation().setDraftText("x".repeat(4097));
    await generation().generate();
    generation().setDraftText("   ");
    await generation().generate();
    expect(fetchMock).not.toHaveBeenCalled();
    expect(sessions().sessions).toEqual([]);
  });

  it("runs one generation at a time", async () => {
    const { fetchMock } = installFakeServer({ "POST /v1/audio/speech": () => speechStream([new Uint8Array(4)]) });
    generation().setDraftText("Once");
    await Promise.all([generation().generate(), generation().generate()]);
    expect(fetchMock).toHaveBeenCalledTimes(1);
  });

  it("cancelling ends the session as cancelled, without an error toast", async () => {
    installFakeServer({
      "POST /v1/audio/speech": (request) =>
        new Promise<Response>((_, reject) =>
          request.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))),
        ),
    });
    generation().setDraftText("Long text");
    const running = generation().generate();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(selectIsGenerating(sessions())).toBe(true);
    generation().cancel();
    await running;
    expect(sessions().sessions[0].status).toBe("cancelled");
    expect(useNotifications.getState().toasts).toEqual([]);
  });
});

describe("the draft", () => {
  it("carries over what the studio saved under its old single key", async () => {
    const saved = { draftText: "old draft", params: {}, sessions: [] };
    localStorage.setItem("chatterbox-studio", JSON.stringify({ state: saved, version: 1 }));
    vi.resetModules();
    const draft = (await import("@/features/speech/stores/generation-store")).useGenerationStore.getState();
    expect(draft.draftText).toBe("old draft");
    expect(draft).not.toHaveProperty("sessions");
  });
});

describe("inputProblem", () => {
  it("explains the limit with both counts", () => {
    expect(inputProblem("a".repeat(4097))).toBe("Text is 4,097 characters; the limit is 4,096.");
    expect(inputProblem("a".repeat(4096))).toBeNull();
  });
});
