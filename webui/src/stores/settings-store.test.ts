import { describe, expect, it, vi } from "vitest";

import { DEFAULT_PARAMS } from "@/config/parameters";
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
