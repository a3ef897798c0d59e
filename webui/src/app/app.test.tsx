import { fireEvent, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { App } from "@/app/app";
import { useStudioStore } from "@/lib/store";
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
    for (const name of ["Text", "Player", "Voice library", "Parameters", "Sessions"]) {
      expect(screen.getByRole("region", { name })).toBeTruthy();
    }
    expect(await screen.findByRole("option", { name: "Ada" })).toBeTruthy();
    expect(await screen.findByRole("option", { name: "tts-1" })).toBeTruthy();

    fireEvent.change(screen.getByLabelText("Voice"), { target: { value: "voice_1" } });
    fireEvent.change(screen.getByLabelText("Model"), { target: { value: "tts-1" } });
    expect(useStudioStore.getState().params).toMatchObject({ voice: "voice_1", model: "tts-1" });
  });

  it("sends the API key typed in the header with every request", async () => {
    const { requests } = installFakeServer({
      "GET /v1/audio/voices": () => Response.json({ voices: [] }),
      "GET /v1/models": () => Response.json({ data: [] }),
    });
    useStudioStore.getState().setApiKey("sk-test");
    renderWithQueries(<App />);
    await screen.findByText("API key ✓");
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.every((r) => r.headers.get("Authorization") === "Bearer sk-test")).toBe(true);
  });
});
