/**
 * Helpers for the server's raw audio: signed 16-bit little-endian mono PCM at 24 kHz, which is
 * what `speech.audio.delta` events carry (base64) and what `response_format: "pcm"` returns.
 */
export const SAMPLE_RATE = 24_000;
const BYTES_PER_SAMPLE = 2;

export function base64ToBytes(base64: string): Uint8Array<ArrayBuffer> {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function bytesToBase64(bytes: Uint8Array): string {
  // Chunked so String.fromCharCode never receives more arguments than the engine allows.
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** Converts PCM16 bytes to floats in [-1, 1); an odd trailing byte is ignored. */
export function pcm16ToFloat32(bytes: Uint8Array): Float32Array<ArrayBuffer> {
  const count = Math.floor(bytes.length / BYTES_PER_SAMPLE);
  const view = new DataView(bytes.buffer, bytes.byteOffset, count * BYTES_PER_SAMPLE);
  const samples = new Float32Array(count);
  for (let i = 0; i < count; i++) samples[i] = view.getInt16(i * BYTES_PER_SAMPLE, true) / 32768;
  return samples;
}

export function pcmDurationSeconds(byteLength: number, sampleRate = SAMPLE_RATE): number {
  return Math.floor(byteLength / BYTES_PER_SAMPLE) / sampleRate;
}

/** Wraps PCM16 mono bytes in a 44-byte RIFF/WAVE header so browsers and players can open it. */
export function pcm16ToWav(pcm: Uint8Array, sampleRate = SAMPLE_RATE): Uint8Array<ArrayBuffer> {
  const dataLength = pcm.length - (pcm.length % BYTES_PER_SAMPLE);
  const wav = new Uint8Array(44 + dataLength);
  const view = new DataView(wav.buffer);
  const writeAscii = (offset: number, text: string) => {
    for (let i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i));
  };
  writeAscii(0, "RIFF");
  view.setUint32(4, 36 + dataLength, true);
  writeAscii(8, "WAVE");
  writeAscii(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * BYTES_PER_SAMPLE, true); // byte rate
  view.setUint16(32, BYTES_PER_SAMPLE, true); // block align
  view.setUint16(34, 16, true); // bits per sample
  writeAscii(36, "data");
  view.setUint32(40, dataLength, true);
  wav.set(pcm.subarray(0, dataLength), 44);
  return wav;
}

/** Peak amplitude per bucket, for drawing a waveform of `bucketCount` bars. */
export function waveformPeaks(samples: Float32Array, bucketCount: number): number[] {
  if (samples.length === 0 || bucketCount <= 0) return [];
  const size = Math.max(1, Math.ceil(samples.length / bucketCount));
  const peaks: number[] = [];
  for (let start = 0; start < samples.length; start += size) {
    let peak = 0;
    const end = Math.min(samples.length, start + size);
    for (let i = start; i < end; i++) peak = Math.max(peak, Math.abs(samples[i]));
    peaks.push(peak);
  }
  return peaks;
}
