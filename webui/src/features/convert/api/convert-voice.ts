import { useMutation } from "@tanstack/react-query";

import { MIME_TYPES, chatterboxAPI, type ResponseFormat } from "@/lib/api";
import { pcm16ToWav } from "@/utils/pcm";

export interface ConvertVoiceInput {
  source: Blob;
  filename: string;
  voice: string;
  format: ResponseFormat;
}

/**
 * The converted recording as a playable, downloadable Blob. WAV is built here from the raw PCM: the
 * server streams WAV with an "until the end" length, which some players refuse once it is a file.
 */
export async function convertVoice({ source, filename, voice, format }: ConvertVoiceInput): Promise<Blob> {
  const response_format = format === "wav" ? "pcm" : format;
  const audio = await chatterboxAPI.convertVoice(source, { voice, response_format }, { filename });
  const bytes = new Uint8Array(await audio.arrayBuffer());
  return new Blob([format === "wav" ? pcm16ToWav(bytes) : bytes], { type: MIME_TYPES[format] });
}

export const useConvertVoice = () => useMutation({ mutationFn: convertVoice });
