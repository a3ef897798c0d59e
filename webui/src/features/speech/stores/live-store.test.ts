import { describe, expect, it } from "vitest";

import { selectIsGenerating, useSessionsStore } from "@/features/sessions/stores/sessions-store";
import { useGenerationStore } from "@/features/speech/stores/generation-store";
import { useLiveStore } from "@/features/speech/stores/live-store";
import { useNotifications } from "@/stores/notifications-store";
import { useSettingsStore } from "@/stores/settings-store";
import { installFakeSocket } from "@/testing/fake-socket";

const live = () => useLiveStore.getState();
const sessions = () => useSessionsStore.getState();

async function goLive(draft: string) {
  const Socket = installFakeSocket();
  useGenerationStore.getState().setDraftText(draft);
  await live().start();
  const [socket] = Socket.instances;
  socket.open();
  return socket;
}

describe("live mode", () => {
  it("sends the session settings, then only the text added to the draft", async () => {
    useSettingsStore.getState().setParam("seed", 5);
    const socket = await goLive("Hello there. ");
    expect(socket.url).toMatch(/^ws:\/\/[^/]+\/v1\/audio\/speech\/stream$/);
    live().sendDraft("Hello there. How");
    live().sendDraft("Hello there. Ho"); // backspace: nothing to send yet
    live().sendDraft("Hello there. How are you?");
    expect(socket.messages()).toEqual([
      { type: "session.update", session: expect.objectContaining({ seed: 5, response_format: "pcm", voice: "default" }) },
      { type: "input.append", text: "Hello there. " },
      { type: "input.append", text: "How" },
      { type: "input.append", text: " are you?" },
    ]);
    expect(sessions().sessions[0].text).toBe("Hello there. How are you?");
    expect(selectIsGenerating(sessions())).toBe(true);
  });

  it("records audio as it arrives and completes on the server's done", async () => {
    const socket = await goLive("One. ");
    socket.serverSends(new Uint8Array(24_000));
    socket.serverSends({ type: "speech.segment.done", segment: 0, text: "One.", start_sample: 0, end_sample: 12_000 });
    live().finish();
    expect(socket.messages().at(-1)).toEqual({ type: "input.done" });
    expect(live().finishing).toBe(true);
    socket.serverSends(new Uint8Array(24_000));
    socket.serverSends({ type: "speech.audio.done", usage: { input_tokens: 5, output_tokens: 9, total_tokens: 14 } });

    const [session] = sessions().sessions;
    expect(session).toMatchObject({ text: "One. ", status: "done" });
    expect(session.audioChunks).toHaveLength(2);
    expect(session.metrics?.durationSeconds).toBe(1);
    expect(live().live).toBe(false);
    expect(selectIsGenerating(sessions())).toBe(false);
  });

  it("shows the server's error and marks the session failed", async () => {
    const socket = await goLive("Hi. ");
    socket.serverSends({ type: "error", error: { message: "voice 'ghost' not found", type: "invalid_request_error", code: "voice_not_found" } });
    socket.serverCloses(1008, "voice 'ghost' not found");
    expect(sessions().sessions[0]).toMatchObject({ status: "error", error: "voice 'ghost' not found" });
    expect(useNotifications.getState().toasts).toEqual([
      expect.objectContaining({ title: "Live speech failed", message: "voice 'ghost' not found" }),
    ]);
    expect(live().live).toBe(false);
  });

  it("a dropped connection fails the session", async () => {
    const socket = await goLive("Hi. ");
    socket.serverCloses(1006);
    expect(sessions().sessions[0].status).toBe("error");
    expect(sessions().sessions[0].error).toContain("code 1006");
  });

  it("stop keeps what was heard as a cancelled session", async () => {
    const socket = await goLive("Hi. ");
    socket.serverSends(new Uint8Array(4));
    live().stop();
    expect(socket.readyState).toBe(3);
    expect(sessions().sessions[0]).toMatchObject({ status: "cancelled", audioChunks: ["AAAAAA=="] });
    expect(live().live).toBe(false);
  });

  it("sends the API key as a query parameter (browsers cannot set headers on a socket)", async () => {
    const Socket = installFakeSocket();
    const { chatterboxAPI } = await import("@/lib/api");
    chatterboxAPI.setApiKey("sk-live");
    await live().start();
    expect(Socket.instances[0].url).toContain("api_key=sk-live");
    chatterboxAPI.setApiKey("");
  });
});
