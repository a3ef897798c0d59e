import { describe, expect, it } from "vitest";

import {
  base64ToBytes,
  bytesToBase64,
  concatBytes,
  pcm16ToFloat32,
  pcm16ToWav,
  pcmDurationSeconds,
  waveformPeaks,
} from "@/utils/pcm";

describe("pcm helpers", () => {
  it("round-trips base64", () => {
    const bytes = new Uint8Array([0, 1, 2, 250, 255, 128]);
    expect(base64ToBytes(bytesToBase64(bytes))).toEqual(bytes);
  });

  it("reads little-endian signed 16-bit samples", () => {
    const samples = pcm16ToFloat32(new Uint8Array([0x00, 0x40, 0x00, 0xc0, 0xff, 0x7f, 0x01]));
    expect(Array.from(samples)).toEqual([0.5, -0.5, 32767 / 32768]);
  });

  it("computes duration at 24 kHz", () => {
    expect(pcmDurationSeconds(48_000)).toBe(1);
  });

  it("writes a valid mono 24 kHz WAV header", () => {
    const pcm = concatBytes([new Uint8Array([1, 0]), new Uint8Array([2, 0, 3, 0])]);
    const wav = pcm16ToWav(pcm);
    const view = new DataView(wav.buffer);
    const ascii = (offset: number) => String.fromCharCode(...wav.subarray(offset, offset + 4));
    expect(ascii(0)).toBe("RIFF");
    expect(ascii(8)).toBe("WAVE");
    expect(view.getUint16(22, true)).toBe(1);
    expect(view.getUint32(24, true)).toBe(24_000);
    expect(view.getUint32(40, true)).toBe(6);
    expect(Array.from(wav.subarray(44))).toEqual([1, 0, 2, 0, 3, 0]);
  });

  it("summarises peaks per bucket", () => {
    expect(waveformPeaks(new Float32Array([0.1, -0.9, 0.2, 0.3]), 2)).toEqual([
      expect.closeTo(0.9),
      expect.closeTo(0.3),
    ]);
  });
});
