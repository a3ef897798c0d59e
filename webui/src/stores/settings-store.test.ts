import { describe, expect, it, vi } from "vitest";

import { DEFAULT_PARAMS, toSpeechRequest } from "@/config/parameters";
import { useSettingsStore } from "@/stores/settings-store";

const store = () => useSettingsStore.getState();

describe("settings store", () => {
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

  it("leaves every model knob to the model's defaults until the user moves it", () => {
    const untouched = toSpeechRequest("Hi", store().params, "wav");
    for (const field of ["exaggeration", "cfg_weight", "temperature", "top_p", "min_p", "repetition_penalty"]) {
      expect(untouched).not.toHaveProperty(field);
    }
    store().setParam("topP", 0.9);
    const body = toSpeechRequest("Hi", store().params, "wav");
    expect(body).toMatchObject({ top_p: 0.9, speed: 1 });
    expect(body).not.toHaveProperty("repetition_penalty");
  });

  it("starts the knobs again from the new model's defaults when the model changes", () => {
    store().setParam("temperature", 1.4);
    store().setParam("speed", 1.5);
    store().setParam("seed", 7);
    store().setParam("model", "chatterbox"); // the same model: the tuning stays
    expect(store().params.temperature).toBe(1.4);

    store().setParam("model", "tts-1");
    // Speed and seed are the studio's, not the model's: they stay.
    expect(store().params).toEqual({ ...DEFAULT_PARAMS, model: "tts-1", speed: 1.5, seed: 7 });
  });

  it("lets knobs saved by version 1 at its fixed values follow the model, keeping moved ones", async () => {
    const saved = { params: { temperature: 0.8, topP: 1, repetitionPenalty: 1.6, minP: 0.05, voice: "voice_2" }, apiKey: "" };
    localStorage.setItem("chatterbox-studio-settings", JSON.stringify({ state: saved, version: 1 }));
    vi.resetModules();
    const settings = (await import("@/stores/settings-store")).useSettingsStore.getState();
    expect(settings.params).toEqual({ ...DEFAULT_PARAMS, voice: "voice_2", repetitionPenalty: 1.6 });
  });

  it("carries over what the studio saved under its old single key", async () => {
    const saved = { params: { voice: "voice_9", seed: 77 }, apiKey: "sk-old", sessions: [] };
    localStorage.setItem("chatterbox-studio", JSON.stringify({ state: saved, version: 1 }));
    vi.resetModules();
    const settings = (await import("@/stores/settings-store")).useSettingsStore.getState();
    expect(settings.params).toEqual({ ...DEFAULT_PARAMS, voice: "voice_9", seed: 77 });
    expect(settings.apiKey).toBe("sk-old");
  });

  it("survives a reload", async () => {
    store().setParam("seed", 1234);
    store().setApiKey("sk-kept");
    await new Promise((resolve) => setTimeout(resolve, 400)); // writes are coalesced
    vi.resetModules();
    const reloaded = (await import("@/stores/settings-store")).useSettingsStore.getState();
    expect(reloaded.params).toEqual({ ...DEFAULT_PARAMS, seed: 1234 });
    expect(reloaded.apiKey).toBe("sk-kept");
  });
});
