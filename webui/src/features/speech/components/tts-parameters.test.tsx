import { fireEvent, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { TTSParameters } from "@/features/speech/components/tts-parameters";
import { DISPLAY_FALLBACK_KNOBS, type ModelKnobs } from "@/config/parameters";
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

    fireEvent.click(screen.getByRole("button", { name: `Reset Temperature to ${DISPLAY_FALLBACK_KNOBS.temperature}` }));
    expect(useSettingsStore.getState().params.temperature).toBeNull(); // the model's default again
  });

  it("rests each knob on the model's default and greys out the knobs it ignores", () => {
    serveCatalog();
    const turbo: ModelKnobs = { defaults: { temperature: 0.8, topP: 0.95, repetitionPenalty: 1.2 }, ignored: ["exaggeration", "cfgWeight", "minP"] };
    renderWithQueries(<TTSParameters model={turbo} />);
    const topP = screen.getByLabelText("Top-p") as HTMLInputElement;
    expect(topP.value).toBe("0.95");
    const reset = screen.getByRole("button", { name: "Reset Top-p to 0.95" }) as HTMLButtonElement;
    expect(reset.disabled).toBe(true); // (and invisible) until moved
    expect((screen.getByLabelText("Exaggeration") as HTMLInputElement).disabled).toBe(true);
    expect(screen.getAllByText(/this model has no use for it/)).toHaveLength(3);

    fireEvent.change(topP, { target: { value: "0.8" } });
    expect(useSettingsStore.getState().params.topP).toBe(0.8);
    fireEvent.click(screen.getByRole("button", { name: "Reset Top-p to 0.95" }));
    expect(useSettingsStore.getState().params.topP).toBeNull();
    expect(topP.value).toBe("0.95");
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
