import { describe, expect, it, vi } from "vitest";

import { DEFAULT_PARAMS } from "@/config/parameters";
import {
  MAX_SESSIONS,
  selectActiveSession,
  selectIsGenerating,
  useSessionsStore,
} from "@/features/sessions/stores/sessions-store";

const store = () => useSessionsStore.getState();
const metrics = { timeToFirstAudioMs: 120, totalMs: 900, durationSeconds: 1.5, realTimeFactor: 0.6 };

describe("sessions store", () => {
  it("records a generation from start to finish", () => {
    const id = store().beginSession("Hello", { ...DEFAULT_PARAMS, seed: 42 });
    expect(selectIsGenerating(store())).toBe(true);
    expect(store().activeSessionId).toBe(id);

    store().appendAudio(id, "AAA=");
    store().appendAudio(id, "AQA=");
    store().completeSession(id, metrics);

    const session = selectActiveSession(store());
    expect(session).toMatchObject({ text: "Hello", status: "done", metrics, audioChunks: ["AAA=", "AQA="] });
    expect(session?.params.seed).toBe(42);
    expect(selectIsGenerating(store())).toBe(false);
  });

  it("keeps newest first and caps the history", () => {
    for (let i = 0; i < MAX_SESSIONS + 3; i++) store().beginSession(`text ${i}`, DEFAULT_PARAMS);
    expect(store().sessions).toHaveLength(MAX_SESSIONS);
    expect(store().sessions[0].text).toBe(`text ${MAX_SESSIONS + 2}`);
  });

  it("marks failures with the message and ends the generation", () => {
    const id = store().beginSession("Hi", DEFAULT_PARAMS);
    store().failSession(id, "error", "model not loaded");
    expect(store().sessions[0]).toMatchObject({ status: "error", error: "model not loaded" });
    expect(selectIsGenerating(store())).toBe(false);
  });

  it("deleting the active session clears the selection", () => {
    const first = store().beginSession("one", DEFAULT_PARAMS);
    const second = store().beginSession("two", DEFAULT_PARAMS);
    store().deleteSession(second);
    expect(store().activeSessionId).toBeNull();
    expect(store().sessions.map((s) => s.id)).toEqual([first]);
  });

  it("survives a reload, and an interrupted generation comes back as cancelled", async () => {
    const done = store().beginSession("kept", DEFAULT_PARAMS);
    store().appendAudio(done, "AAA=");
    store().completeSession(done, metrics);
    store().beginSession("streaming when the page closed", DEFAULT_PARAMS);
    await new Promise((resolve) => setTimeout(resolve, 400)); // writes are coalesced

    // A reload is a fresh module instance hydrating from the same storage.
    vi.resetModules();
    const reloaded = (await import("@/features/sessions/stores/sessions-store")).useSessionsStore.getState();

    expect(reloaded.sessions.map((s) => [s.text, s.status])).toEqual([
      ["streaming when the page closed", "cancelled"],
      ["kept", "done"],
    ]);
    expect(reloaded.sessions[1].audioChunks).toEqual(["AAA="]);
  });
});
