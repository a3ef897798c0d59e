import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { App } from "@/app/app";
import { toSpeechRequest } from "@/config/parameters";
import { useGenerationStore } from "@/features/speech/stores/generation-store";
import { useSettingsStore } from "@/stores/settings-store";
import { installFakeServer } from "@/testing/fake-server";
import { renderWithQueries } from "@/testing/render";

describe("App", () => {
  it("lays out every section and offers the server's voices and models", async () => {
    installFakeServer({
      "GET /v1/audio/voices": () =>
        Response.json({ voices: [{ id: "default", name: "default", builtin: true }, { id: "voice_1", name: "Ada" }] }),
      "GET /v1/models": () => Response.json({ object: "list", data: [{ id: "chatterbox" }, { id: "tts-1" }] }),
    });
    renderWithQueries(<App />);
    for (const name of ["Text", "Player", "Voice library", "Convert a recording", "Parameters", "Sessions"]) {
      expect(screen.getByRole("region", { name })).toBeTruthy();
    }
    expect(await within(screen.getByLabelText("Voice")).findByRole("option", { name: "Ada" })).toBeTruthy();
    expect(await screen.findByRole("option", { name: "tts-1" })).toBeTruthy();

    fireEvent.change(screen.getByLabelText("Voice"), { target: { value: "voice_1" } });
    fireEvent.change(screen.getByLabelText("Model"), { target: { value: "tts-1" } });
    expect(useSettingsStore.getState().params).toMatchObject({ voice: "voice_1", model: "tts-1" });
  });

  it("offers a language picker only for a model that speaks several languages", async () => {
    const multilingual = {
      id: "chatterbox",
      variant: "multilingual",
      languages: { en: "English", fr: "French", ja: "Japanese" },
    };
    const english = { id: "tts-1", variant: "english", languages: { en: "English" } };
    installFakeServer({
      "GET /v1/audio/voices": () => Response.json({ voices: [] }),
      "GET /v1/models": () => Response.json({ object: "list", data: [multilingual, english] }),
    });
    renderWithQueries(<App />);
    expect(await screen.findByRole("option", { name: "Japanese" })).toBeTruthy();
    fireEvent.change(screen.getByLabelText("Language"), { target: { value: "fr" } });
    expect(useSettingsStore.getState().params.language).toBe("fr");
    expect(toSpeechRequest("Bonjour", useSettingsStore.getState().params, "wav").language).toBe("fr");

    // An English-only model hides the picker and goes back to English (sent as the default: omitted).
    fireEvent.change(screen.getByLabelText("Model"), { target: { value: "tts-1" } });
    await waitFor(() => expect(useSettingsStore.getState().params.language).toBe("en"));
    expect(screen.queryByLabelText("Language")).toBeNull();
    expect(toSpeechRequest("Hello", useSettingsStore.getState().params, "wav")).not.toHaveProperty("language");
  });

  it("describes the selected model and offers its paralinguistic tags", async () => {
    const nano = { id: "chatterbox", variant: "nano", languages: { en: "English" }, paralinguistic_tags: ["[laugh]", "[cough]"] };
    const v3 = {
      id: "tts-1",
      variant: "multilingual",
      version: "v3",
      languages: { en: "English", fr: "French", ja: "Japanese" },
      paralinguistic_tags: [],
    };
    installFakeServer({
      "GET /v1/audio/voices": () => Response.json({ voices: [] }),
      "GET /v1/models": () => Response.json({ object: "list", data: [nano, v3] }),
    });
    useGenerationStore.getState().setDraftText("Oh no");
    renderWithQueries(<App />);
    fireEvent.click(await screen.findByRole("button", { name: "[laugh]" }));
    expect(useGenerationStore.getState().draftText).toBe("Oh no [laugh] ");
    expect(screen.getByTestId("model-description").textContent).toBe("Chatterbox Nano · English · 2 paralinguistic tags");

    // A model without tags (they would be dropped) offers none.
    fireEvent.change(screen.getByLabelText("Model"), { target: { value: "tts-1" } });
    await waitFor(() => expect(screen.queryByRole("button", { name: "[laugh]" })).toBeNull());
    expect(screen.getByTestId("model-description").textContent).toBe("Chatterbox Multilingual V3 · 3 languages");
  });

  it("sets the sliders to the selected model's defaults and back when the model changes", async () => {
    const turbo = {
      id: "chatterbox",
      variant: "turbo",
      defaults: { temperature: 0.8, top_p: 0.95, repetition_penalty: 1.2 },
      ignored_parameters: ["exaggeration", "cfg_weight", "min_p", "language"],
    };
    const multilingual = {
      id: "tts-1",
      variant: "multilingual",
      defaults: { exaggeration: 0.5, cfg_weight: 0.5, temperature: 0.8, top_p: 1, min_p: 0.05, repetition_penalty: 2 },
      ignored_parameters: [],
    };
    installFakeServer({
      "GET /v1/audio/voices": () => Response.json({ voices: [] }),
      "GET /v1/models": () => Response.json({ object: "list", data: [turbo, multilingual] }),
    });
    renderWithQueries(<App />);
    const slider = (label: string) => screen.getByLabelText(label) as HTMLInputElement;
    await waitFor(() => expect(slider("Top-p").value).toBe("0.95"));
    expect(slider("CFG weight").disabled).toBe(true);
    fireEvent.change(slider("Temperature"), { target: { value: "1.5" } });

    fireEvent.change(screen.getByLabelText("Model"), { target: { value: "tts-1" } });
    expect(slider("Repetition penalty").value).toBe("2");
    expect(slider("Top-p").value).toBe("1");
    expect(slider("Temperature").value).toBe("0.8"); // the tuning for Turbo does not carry over
    expect(slider("CFG weight").disabled).toBe(false);
    const request = toSpeechRequest("Bonjour", useSettingsStore.getState().params, "wav");
    expect(request).not.toHaveProperty("repetition_penalty");
    expect(request).not.toHaveProperty("temperature");
  });

  it("sends the API key typed in the header with every request", async () => {
    const { requests } = installFakeServer({
      "GET /v1/audio/voices": () => Response.json({ voices: [] }),
      "GET /v1/models": () => Response.json({ data: [] }),
    });
    useSettingsStore.getState().setApiKey("sk-test");
    renderWithQueries(<App />);
    await screen.findByText("API key ✓");
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.every((r) => r.headers.get("Authorization") === "Bearer sk-test")).toBe(true);
  });
});
