import { fireEvent, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { TTSParameters } from "@/features/speech/components/tts-parameters";
import { DEFAULT_PARAMS } from "@/config/parameters";
import { useSettingsStore } from "@/stores/settings-store";
import { installFakeServer } from "@/testing/fake-server";
import { renderWithQueries } from "@/testing/render";

function serveCatalog() {
  installFakeServer({
    "GET /v1/audio/voices": () =>
      Response.json({ voices: [{ id: "default", name: "default", builtin: true }, { id: "voice_1", name: "Ada" }] }),
    "GET /v1/models": () => Response.json({ object: "list", data: [{ id: "chatterbox" }, { id: "tts-1" }] }),
  });
}

describe("TTSParameters", () => {
  it("moves a slider, shows its value, and resets it", () => {
    serveCatalog();
    renderWithQueries(<TTSParameters />);
    fireEvent.change(screen.getByLabelText("Temperature"), { target: { value: "1.5" } });
    expect(useSettingsStore.getState().params.temperature).toBe(1.5);
    expect(screen.getByText("1.50")).toBeTruthy();

    fireEvent.click(screen.getByRole("button", { name: `Reset Temperature to ${DEFAULT_PARAMS.temperature}` }));
    expect(useSettingsStore.getState().params.temperature).toBe(DEFAULT_PARAMS.temperature);
  });

  it("takes a fixed seed and goes back to random", () => {
    serveCatalog();
    renderWithQueries(<TTSParameters />);
    fireEvent.change(screen.getByLabelText("Seed"), { target: { value: "42" } });
    expect(useSettingsStore.getState().params.seed).toBe(42);
    fireEvent.click(screen.getByRole("button", { name: "Use a random seed" }));
    expect(useSettingsStore.getState().params.seed).toBeNull();
  });
});
