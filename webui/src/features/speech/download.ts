/**
 * Saves a session's audio in the chosen format. WAV and PCM are built from the streamed samples;
 * compressed formats are encoded by the server, re-running the session with its recorded seed.
 */
import { MIME_TYPES, chatterboxAPI, type ResponseFormat } from "@/lib/api";
import { toSpeechRequest } from "@/config/parameters";
import { base64ToBytes, concatBytes, pcm16ToWav } from "@/utils/pcm";
import type { Session } from "@/features/sessions/stores/sessions-store";

export function sessionPcm(session: Pick<Session, "audioChunks">): Uint8Array<ArrayBuffer> {
  return concatBytes(session.audioChunks.map(base64ToBytes));
}

export async function sessionAudioBlob(session: Session, format: ResponseFormat): Promise<Blob> {
  if (format === "wav") return new Blob([pcm16ToWav(sessionPcm(session))], { type: MIME_TYPES.wav });
  if (format === "pcm") return new Blob([sessionPcm(session)], { type: MIME_TYPES.pcm });
  return chatterboxAPI.synthesize(toSpeechRequest(session.text, session.params, format));
}

export async function downloadSession(session: Session, format: ResponseFormat): Promise<void> {
  const blob = await sessionAudioBlob(session, format);
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = `chatterbox-${new Date(session.createdAt).toISOString().replace(/[:.]/g, "-")}.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
  // Give the browser a moment to start the download before the URL is released.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
