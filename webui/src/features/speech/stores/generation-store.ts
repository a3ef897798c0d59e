/**
 * The draft text and the one running generation. `generate` streams speech for the draft,
 * plays it as it arrives, and records the audio and metrics in a new session; failures become a
 * toast. Whether a generation is running is the session's status (`selectIsGenerating`); this
 * store keeps only the draft and the means to cancel.
 */
import { create } from "zustand";
import { createJSONStorage, persist } from "zustand/middleware";

import { randomSeed, toSpeechRequest } from "@/config/parameters";
import { useSessionsStore, selectIsGenerating } from "@/features/sessions/stores/sessions-store";
import { usePlaybackStore } from "@/features/speech/stores/playback-store";
import { chatterboxAPI, isAbortError, MAX_INPUT_CHARS } from "@/lib/api";
import { createStudioStorage } from "@/lib/persist-storage";
import { notifyError } from "@/stores/notifications-store";
import { useSettingsStore } from "@/stores/settings-store";
import { pcmDurationSeconds } from "@/utils/pcm";

export interface GenerationState {
  draftText: string;
}

export interface GenerationActions {
  setDraftText: (text: string) => void;
  /** Speaks the draft (unless it is invalid or a generation is running). */
  generate: () => Promise<void>;
  /** Stops the running generation; its session ends as "cancelled". */
  cancel: () => void;
}

// The request in flight: an abort handle, not state anything renders.
let activeRequest: AbortController | null = null;

export const useGenerationStore = create<GenerationState & GenerationActions>()(
  persist(
    (set, get) => ({
      draftText: "",
      setDraftText: (draftText) => set({ draftText }),
      generate: () => runGeneration(get().draftText),
      cancel: () => activeRequest?.abort(),
    }),
    {
      name: "chatterbox-studio-draft",
      version: 1,
      // The draft was kept with the sessions under "chatterbox-studio" before each store had its own key.
      storage: createJSONStorage(() => createStudioStorage({ readsFrom: "chatterbox-studio" })),
      partialize: (state) => ({ draftText: state.draftText }),
      merge: (persisted, current) => ({
        ...current,
        draftText: (persisted as Partial<GenerationState> | undefined)?.draftText ?? current.draftText,
      }),
    },
  ),
);

/** Why `text` cannot be generated, or null when it can. */
export function inputProblem(text: string): string | null {
  if (text.trim() === "") return "Type some text to speak.";
  if (text.length > MAX_INPUT_CHARS) {
    return `Text is ${text.length.toLocaleString("en-US")} characters; the limit is ${MAX_INPUT_CHARS.toLocaleString("en-US")}.`;
  }
  return null;
}

async function runGeneration(text: string): Promise<void> {
  const sessions = useSessionsStore.getState();
  if (selectIsGenerating(sessions) || inputProblem(text) !== null) return;

  // Fix the seed now so the session can be reproduced (and re-downloaded in another format).
  const settings = useSettingsStore.getState().params;
  const params = { ...settings, seed: settings.seed ?? randomSeed() };
  const sessionId = sessions.beginSession(text, params);
  const controller = new AbortController();
  activeRequest = controller;
  const player = usePlaybackStore.getState();
  await player.begin();

  const startedAt = performance.now();
  let firstAudioAt: number | null = null;
  let receivedBytes = 0;
  try {
    const stream = chatterboxAPI.synthesizeStream(toSpeechRequest(text, params, "pcm"), { signal: controller.signal });
    for await (const event of stream) {
      if (event.type !== "delta") continue;
      firstAudioAt ??= performance.now();
      receivedBytes += event.pcm.length;
      const studio = useSessionsStore.getState();
      studio.appendAudio(sessionId, event.audio);
      // Keep recording but stay quiet if the user switched to another session meanwhile.
      if (studio.activeSessionId === sessionId) player.enqueue(event.pcm);
    }
    player.finish();
    const totalMs = performance.now() - startedAt;
    const durationSeconds = pcmDurationSeconds(receivedBytes);
    useSessionsStore.getState().completeSession(sessionId, {
      timeToFirstAudioMs: firstAudioAt === null ? null : firstAudioAt - startedAt,
      totalMs,
      durationSeconds,
      realTimeFactor: durationSeconds > 0 ? totalMs / 1000 / durationSeconds : null,
    });
  } catch (error) {
    player.stop();
    if (isAbortError(error)) {
      useSessionsStore.getState().failSession(sessionId, "cancelled", null);
    } else {
      const message = error instanceof Error ? error.message : String(error);
      useSessionsStore.getState().failSession(sessionId, "error", message);
      notifyError("Generation failed", error);
    }
  } finally {
    if (activeRequest === controller) activeRequest = null;
  }
}
