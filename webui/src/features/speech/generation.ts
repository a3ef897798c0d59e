/**
 * Runs one generation: streams speech for the draft text, plays it as it arrives, records the
 * audio and metrics in a new session, and reports failures as a toast. Lives outside React so a
 * generation is not tied to any one component's lifetime.
 */
import { chatterboxAPI, isAbortError, MAX_INPUT_CHARS } from "@/lib/api";
import { notifyError } from "@/lib/notifications";
import { randomSeed, toSpeechRequest } from "@/lib/parameters";
import { pcmDurationSeconds } from "@/lib/pcm";
import { audioPlayer } from "@/lib/pcm-player";
import { useStudioStore } from "@/lib/store";

let activeRequest: AbortController | null = null;

/** Why `text` cannot be generated, or null when it can. */
export function inputProblem(text: string): string | null {
  if (text.trim() === "") return "Type some text to speak.";
  if (text.length > MAX_INPUT_CHARS) {
    return `Text is ${text.length.toLocaleString("en-US")} characters; the limit is ${MAX_INPUT_CHARS.toLocaleString("en-US")}.`;
  }
  return null;
}

export async function startGeneration(): Promise<void> {
  const store = useStudioStore.getState();
  const text = store.draftText;
  if (store.isGenerating || inputProblem(text) !== null) return;

  // Fix the seed now so the session can be reproduced (and re-downloaded in another format).
  const params = { ...store.params, seed: store.params.seed ?? randomSeed() };
  const sessionId = store.beginSession(text, params);
  const controller = new AbortController();
  activeRequest = controller;
  await audioPlayer.begin();

  const startedAt = performance.now();
  let firstAudioAt: number | null = null;
  let receivedBytes = 0;
  try {
    const stream = chatterboxAPI.synthesizeStream(toSpeechRequest(text, params, "pcm"), { signal: controller.signal });
    for await (const event of stream) {
      if (event.type !== "delta") continue;
      firstAudioAt ??= performance.now();
      receivedBytes += event.pcm.length;
      const studio = useStudioStore.getState();
      studio.appendAudio(sessionId, event.audio);
      // Keep recording but stay quiet if the user switched to another session meanwhile.
      if (studio.activeSessionId === sessionId) audioPlayer.enqueue(event.pcm);
    }
    audioPlayer.finish();
    const totalMs = performance.now() - startedAt;
    const durationSeconds = pcmDurationSeconds(receivedBytes);
    useStudioStore.getState().completeSession(sessionId, {
      timeToFirstAudioMs: firstAudioAt === null ? null : firstAudioAt - startedAt,
      totalMs,
      durationSeconds,
      realTimeFactor: durationSeconds > 0 ? totalMs / 1000 / durationSeconds : null,
    });
  } catch (error) {
    audioPlayer.stop();
    if (isAbortError(error)) {
      useStudioStore.getState().failSession(sessionId, "cancelled", null);
    } else {
      const message = error instanceof Error ? error.message : String(error);
      useStudioStore.getState().failSession(sessionId, "error", message);
      notifyError("Generation failed", error);
    }
  } finally {
    if (activeRequest === controller) activeRequest = null;
  }
}

export function cancelGeneration(): void {
  activeRequest?.abort();
}
