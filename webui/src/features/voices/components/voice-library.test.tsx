import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { VoiceLibrary } from "@/features/voices/components/voice-library";
import { useSettingsStore } from "@/stores/settings-store";
import { installFakeServer, openAIError } from "@/testing/fake-server";
import { renderWithQueries } from "@/testing/render";
import { useNotifications } from "@/stores/notifications-store";

/** A tiny voice catalogue behind the fake HTTP layer, so list/clone/delete stay consistent. */
function serveVoices() {
  const voices = [{ id: "default", name: "default", builtin: true }];
  return installFakeServer({
    "GET /v1/audio/voices": () => Response.json({ voices }),
    "POST /v1/audio/voices": async (request) => {
      const form = await request.formData();
      const name = String(form.get("name"));
      if (voices.some((v) => v.name === name)) return openAIError(409, `a voice named '${name}' already exists`, "name");
      const voice = { id: `voice_${voices.length}`, name, builtin: false };
      voices.push(voice);
      return Response.json({ object: "audio.voice", id: voice.id, name, created_at: 1 }, { status: 201 });
    },
    "DELETE /v1/audio/voices/voice_1": () => {
      voices.splice(1, 1);
      return new Response(null, { status: 204 });
    },
  });
}

function cloneAs(name: string) {
  fireEvent.change(screen.getByLabelText("Voice name"), { target: { value: name } });
  const file = new File([new Uint8Array(64)], "me.wav", { type: "audio/wav" });
  fireEvent.change(screen.getByLabelText(/Reference audio/), { target: { files: [file] } });
  fireEvent.click(screen.getByRole("button", { name: "Clone voice" }));
}

describe("VoiceLibrary", () => {
  it("clones a voice, selects it, and deletes it after confirmation", async () => {
    const { requests } = serveVoices();
    renderWithQueries(<VoiceLibrary />);
    await screen.findByRole("button", { name: "Preview default" });
    expect(screen.queryByRole("button", { name: "Delete default" })).toBeNull(); // built-in

    cloneAs("Ada");
    const row = await screen.findByRole("button", { name: "Delete Ada" });
    expect(useSettingsStore.getState().params.voice).toBe("voice_1");
    const upload = requests.find((r) => r.method === "POST")!;
    const form = await upload.formData();
    expect(form.get("name")).toBe("Ada");
    expect((form.get("audio_sample") as Blob).size).toBe(64);

    fireEvent.click(row);
    const confirm = screen.getByRole("group", { name: "Confirm deleting Ada" });
    fireEvent.click(within(confirm).getByRole("button", { name: "Confirm delete" }));
    await waitFor(() => expect(screen.queryByText("Ada")).toBeNull());
    expect(useSettingsStore.getState().params.voice).toBe("default");
  });

  it("cancelling the confirmation keeps the voice", async () => {
    serveVoices();
    renderWithQueries(<VoiceLibrary />);
    cloneAs("Bea");
    fireEvent.click(await screen.findByRole("button", { name: "Delete Bea" }));
    fireEvent.click(screen.getByRole("button", { name: "Cancel" }));
    expect(screen.getByRole("button", { name: "Delete Bea" })).toBeTruthy();
  });

  it("shows the server's reason when cloning fails", async () => {
    serveVoices();
    renderWithQueries(<VoiceLibrary />);
    cloneAs("default");
    await waitFor(() =>
      expect(useNotifications.getState().toasts[0]).toMatchObject({
        title: "Cloning failed",
        message: "a voice named 'default' already exists",
      }),
    );
  });
});
