/**
 * Live mode: the draft is spoken as it is typed. Text added to the draft goes into a socket session
 * (`WS /v1/audio/speech/stream`) at once; the server speaks each sentence as soon as it is complete,
 * and its audio plays and is recorded in a session as it arrives. Only added text is sent: what was
 * sent cannot be unsaid, so edits before that point are not spoken.
 */
import { create } from "zustand";

import { randomSeed, toSpeechSettings } from "@/config/parameters";
import { selectIsGenerating, useSessionsStore } from "@/features/sessions/stores/sessions-store";
import { useGenerationStore } from "@/features/speech/stores/generation-store";
import { usePlaybackStore } from "@/features/speech/stores/playback-store";
import { chatterboxAPI } from "@/lib/api";
import type { SpeechSocket } from "@/lib/speech-socket";
import { notifyError } from "@/stores/notifications-store";
import { useSettingsStore } from "@/stores/settings-store";
import { bytesToBase64, pcmDurationSeconds } from "@/utils/pcm";

export interface LiveState {
  /** A live session is open (from "Go live" until the server's last audio, an error, or Stop). */
  live: boolean;
  /** Input ended ("Finish"): the rest is being spoken. */
  finishing: boolean;
}

export interface LiveActions {
  /** Opens a session and sends the current draft. Call it from a click: audio needs a user gesture. */
  start: () => Promise<void>;
  /** The draft changed: sends what was added since the last call. */
  sendDraft: (draft: string) => void;
  /** No more text: the rest is spoken, then the session completes. */
  finish: () => void;
  /** Abandons the session; what was heard so far is kept as a cancelled session. */
  stop: () => void;
}

interface Connection {
  socket: SpeechSocket;
  sessionId: string;
  sent: string;
  startedAt: number;
  firstAudioAt: number | null;
  receivedBytes: number;
}

// The open connection: handles and counters, not state anything renders.
let connection: Connection | null = null;

export const useLiveStore = create<LiveState & LiveActions>()((set, get) => {
  const end = () => {
    connection = null;
    set({ live: false, finishing: false });
  };

  return {
    live: false,
    finishing: false,

    start: async () => {
      if (get().live || selectIsGenerating(useSessionsStore.getState())) return;
      const settings = useSettingsStore.getState().params;
      // One seed for the whole session (the server derives one per sentence from it).
      const params = { ...settings, seed: settings.seed ?? randomSeed() };
      const sessionId = useSessionsStore.getState().beginSession("", params);
      const player = usePlaybackStore.getState();
      await player.begin();
      const socket = chatterboxAPI.openSpeechStream(toSpeechSettings(params, "pcm"), {
        onEvent: (event) => {
          const current = connection;
          if (current === null || current.socket !== socket) return;
          if (event.type === "audio") {
            current.firstAudioAt ??= performance.now();
            current.receivedBytes += event.pcm.length;
            const sessions = useSessionsStore.getState();
            sessions.appendAudio(sessionId, bytesToBase64(event.pcm));
            if (sessions.activeSessionId === sessionId) player.enqueue(event.pcm);
          } else if (event.type === "done") {
            player.finish();
            const totalMs = performance.now() - current.startedAt;
            const durationSeconds = pcmDurationSeconds(current.receivedBytes);
            useSessionsStore.getState().completeSession(sessionId, {
              timeToFirstAudioMs: current.firstAudioAt === null ? null : current.firstAudioAt - current.startedAt,
              totalMs,
              durationSeconds,
              realTimeFactor: null, // the pace is the typist's, not the server's
            });
            end();
          }
        },
        onError: (error) => {
          if (connection?.socket !== socket) return;
          useSessionsStore.getState().failSession(sessionId, "error", error.message);
          notifyError("Live speech failed", new Error(error.message));
          end();
        },
      });
      connection = { socket, sessionId, sent: "", startedAt: performance.now(), firstAudioAt: null, receivedBytes: 0 };
      set({ live: true, finishing: false });
      get().sendDraft(useGenerationStore.getState().draftText);
    },

    sendDraft: (draft) => {
      const current = connection;
      if (current === null || get().finishing) return;
      // Text cut from the end may be typed again: wait until the draft grows past what was sent.
      if (current.sent.startsWith(draft)) return;
      // An edit before the end cannot be unsaid: the edited draft counts as sent, and typing goes on from it.
      if (draft.startsWith(current.sent)) current.socket.append(draft.slice(current.sent.length));
      current.sent = draft;
      useSessionsStore.getState().setSessionText(current.sessionId, draft);
    },

    finish: () => {
      if (connection === null) return;
      connection.socket.finish();
      set({ finishing: true });
    },

    stop: () => {
      const current = connection;
      if (current === null) return;
      current.socket.close();
      usePlaybackStore.getState().stop();
      useSessionsStore.getState().failSession(current.sessionId, "cancelled", null);
      end();
    },
  };
});
