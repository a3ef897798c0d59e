import { useMemo, useRef } from "react";

import { base64ToBytes, pcm16ToFloat32, waveformPeaks } from "@/utils/pcm";

const BARS = 96;
const SAMPLES_PER_BLOCK = 120; // 5 ms at 24 kHz

interface WaveformProps {
  chunks: readonly string[];
  /** Share of the clip already heard, 0..1. */
  progress: number;
}

/**
 * Peak level per 5 ms block. While a clip streams its chunk list only grows, so only the new
 * chunks are decoded: a long generation does not re-decode everything on every chunk.
 */
function useBlockPeaks(chunks: readonly string[]): Float32Array {
  const cache = useRef<{ chunks: readonly string[]; blocks: number[] }>({ chunks: [], blocks: [] });
  return useMemo(() => {
    const previous = cache.current;
    const grows = previous.chunks.length <= chunks.length && previous.chunks.every((c, i) => c === chunks[i]);
    const blocks = grows ? [...previous.blocks] : [];
    for (const chunk of chunks.slice(grows ? previous.chunks.length : 0)) {
      const samples = pcm16ToFloat32(base64ToBytes(chunk));
      blocks.push(...waveformPeaks(samples, Math.ceil(samples.length / SAMPLES_PER_BLOCK)));
    }
    cache.current = { chunks, blocks };
    return Float32Array.from(blocks);
  }, [chunks]);
}

/** Peak bars of the audio so far; bars already played are drawn in the accent colour. */
export function Waveform({ chunks, progress }: WaveformProps) {
  const blocks = useBlockPeaks(chunks);
  const peaks = useMemo(() => {
    const values = waveformPeaks(blocks, BARS);
    const loudest = Math.max(1e-3, ...values);
    return values.map((v) => v / loudest);
  }, [blocks]);

  return (
    <svg viewBox={`0 0 ${Math.max(1, peaks.length)} 40`} preserveAspectRatio="none" className="h-16 w-full" aria-hidden="true" data-testid="waveform" data-chunks={chunks.length}>
      {peaks.map((peak, i) => {
        const height = Math.max(1.5, peak * 36);
        const played = (i + 0.5) / peaks.length <= progress;
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
