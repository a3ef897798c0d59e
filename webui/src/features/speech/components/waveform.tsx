import { useMemo } from "react";

import { base64ToBytes, concatBytes, pcm16ToFloat32, waveformPeaks } from "@/lib/pcm";

const BARS = 96;

interface WaveformProps {
  chunks: readonly string[];
  /** Share of the clip already heard, 0..1. */
  progress: number;
}

/** Peak bars of the audio so far; bars already played are drawn in the accent colour. */
export function Waveform({ chunks, progress }: WaveformProps) {
  // Recomputed only when a chunk arrives, not on every progress tick.
  const peaks = useMemo(() => {
    const samples = pcm16ToFloat32(concatBytes(chunks.map(base64ToBytes)));
    const values = waveformPeaks(samples, BARS);
    const loudest = Math.max(1e-3, ...values);
    return values.map((v) => v / loudest);
  }, [chunks]);

  return (
    <svg viewBox={`0 0 ${BARS} 40`} preserveAspectRatio="none" className="h-16 w-full" aria-hidden="true" data-testid="waveform">
      {peaks.map((peak, i) => {
        const height = Math.max(1.5, peak * 36);
        const played = (i + 0.5) / BARS <= progress;
        return (
          <rect
            key={i}
            x={i + 0.15}
            y={20 - height / 2}
            width={0.7}
            height={height}
            rx={0.3}
            className={played ? "fill-indigo-600" : "fill-slate-300"}
          />
        );
      })}
    </svg>
  );
}
