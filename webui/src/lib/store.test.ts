import { describe, expect, it, vi } from "vitest";

import { DEFAULT_PARAMS } from "@/lib/parameters";
import { MAX_SESSIONS, selectActiveSession, selectCurrentAudio, useStudioStore } from "@/lib/store";

const store = () => useStudioStore.getState();
const metrics = { timeToFirstAudioMs: 120, totalMs: 900, durationSeconds: 1.5, realTimeFactor: 0.6 };

describe("studio store parameters", () => {
  it("sets and resets one parameter", () => {
    store().setParam("temperature", 1.4);
    expect(store().params.temperature).toBe(1.4);
    store().resetParam("temperature");
    expect(store().params.temperature).toBe(DEFAULT_PARAMS.temperature);
  });

  it("resets tuning but keeps the chosen voice and model", () => {
    store().setParam("voice", "voice_1");
    store().setParam("exaggeration", 1.5);
    store().resetParams();
    expect(store().params).toEqual({ ...DEFAULT_PARAMS, voice: "voice_1" });
  });
});

describe("studio store sessions", () => {
  it("records a generation from start to finish", () => {
    const id = store().beginSession("Hello", { ...DEFAULT_PARAMS, seed: 42 });
    expect(store().isGenerating).toBe(true);
    expect(store().activeSessionId).toBe(id);

    store().appendAudio(id, "AAA=");
    store().appendAudio(id, "AQA=");
    store().completeSession(id, metrics);

    const session = selectActiveSession(store());
    expect(session).toMatchObject({ text: "Hello", status: "done", metrics, audioChunks: ["AAA=", "AQA="] });
    expect(session?.params.seed).toBe(42);
    expect(selectCurrentAudio(store())).toEqual(["AAA=", "AQA="]);
    expect(store().isGenerating).toBe(false);
  });

  it("keeps newest first and caps the history", () => {
    for (let i = 0; i < MAX_SESSIONS + 3; i++) store().beginSession(`text ${i}`, DEFAULT_PARAMS);
    expect(store().sessions).toHaveLength(MAX_SESSIONS);
    expect(store().sessions[0].text).toBe(`text ${MAX_SESSIONS + 2}`);
  });

  it("marks failures with the message and clears the generating flag", () => {
    const id = store().beginSession("Hi", DEFAULT_PARAMS);
    store().failSession(id, "error", "model not loaded");
    expect(store().sessions[0]).toMatchObject({ status: "error", error: "model not loaded" });
    expect(store().isGenerating).toBe(false);
  });

  it("deleting the active session clears the selection", () => {
    const first = store().beginSession("one", DEFAULT_PARAMS);
    const second = store().beginSession("two", DEFAULT_PARAMS);
    store().deleteSession(second);
    expect(store().activeSessionId).toBeNull();
    expect(store().sessions.map((s) => s.id)).toEqual([first]);
  });
});

describe("studio store persistence", () => {
  it("survives a reload, and an interrupted generation comes back as cancelled", async () => {
    store().setParam("seed", 1234);
    const done = store().beginSession("kept", DEFAULT_PARAMS);
    store().appendAudio(done, "AAA=");
    store().completeSession(done, metrics);
    store().beginSession("streaming when the page closed", DEFAULT_PARAMS);
    await new Promise((resolve) => setTimeout(resolve, 400)); // writes are coalesced

    // A reload is a fresh module instance hydrating from the same storage.
    vi.resetModules();
    const reloaded = (await import("@/lib/store")).useStudioStore.getState();

    expect(reloaded.params.seed).toBe(1234);
    expect(reloaded.isGenerating).toBe(false);
    expect(reloaded.sessions.map((s) => [s.text, s.status])).toEqual([
      ["streaming when the page closed", "cancelled"],
      ["kept", "done"],
    ]);
    expect(reloaded.sessions[1].audioChunks).toEqual(["AAA="]);
  });
});
