/**
 * The studio's one speaker. Plays PCM16 chunks through Web Audio as they arrive: each chunk is
 * scheduled right after the previous one, so playback starts with the first chunk instead of
 * waiting for the whole clip. Generation, live mode and replay share it, so they never talk over
 * each other. The Web Audio nodes are private to this module; React reads the store's state.
 */
import { create } from "zustand";

import { pcm16ToFloat32, SAMPLE_RATE } from "@/utils/pcm";

export type PlayerStatus = "idle" | "buffering" | "playing" | "ended";

export interface PlaybackState {
  status: PlayerStatus;
  /** Seconds of audio received (and scheduled) so far. */
  scheduledSeconds: number;
}

export interface PlaybackActions {
  /**
   * Stops whatever is playing and readies for new audio. Call it from the click that starts
   * playback: browsers only allow an AudioContext to make sound after a user gesture.
   */
  begin: () => Promise<void>;
  enqueue: (pcm: Uint8Array) => void;
  /** No more chunks will come; the status becomes "ended" once the last one has played. */
  finish: () => void;
  /** Plays a complete clip from the start. */
  play: (pcm: Uint8Array) => Promise<void>;
  stop: () => void;
}

interface Segment {
  start: number;
  duration: number;
  source: AudioBufferSourceNode;
}

// Scheduling slightly ahead of "now" avoids clipping the first samples of each chunk.
const LEAD_SECONDS = 0.05;

let context: AudioContext | null = null;
let segments: Segment[] = [];
let nextStart = 0;
let inputComplete = false;

function stopSources(): void {
  for (const segment of segments) {
    segment.source.onended = null;
    try {
      segment.source.stop();
    } catch {
      // Already stopped.
    }
  }
  segments = [];
}

export const usePlaybackStore = create<PlaybackState & PlaybackActions>()((set, get) => {
  const checkEnded = () => {
    if (!inputComplete || get().status === "idle") return;
    const now = context?.currentTime ?? Infinity;
    if (segments.every((s) => s.start + s.duration <= now + 0.01)) set({ status: "ended" });
  };

  return {
    status: "idle",
    scheduledSeconds: 0,

    begin: async () => {
      stopSources();
      inputComplete = false;
      set({ status: "buffering", scheduledSeconds: 0 });
      if (typeof AudioContext === "undefined") return; // No audio device API (tests): keep metrics only.
      context ??= new AudioContext();
      if (context.state === "suspended") await context.resume().catch(() => undefined);
      nextStart = 0;
    },

    enqueue: (pcm) => {
      const samples = pcm16ToFloat32(pcm);
      if (samples.length === 0) return;
      const duration = samples.length / SAMPLE_RATE;
      if (context) {
        const buffer = context.createBuffer(1, samples.length, SAMPLE_RATE);
        buffer.copyToChannel(samples, 0);
        const source = context.createBufferSource();
        source.buffer = buffer;
        source.connect(context.destination);
        const start = Math.max(nextStart, context.currentTime + LEAD_SECONDS);
        source.start(start);
        source.onended = checkEnded;
        segments.push({ start, duration, source });
        nextStart = start + duration;
      }
      set((state) => ({ status: "playing", scheduledSeconds: state.scheduledSeconds + duration }));
    },

    finish: () => {
      inputComplete = true;
      checkEnded();
    },

    play: async (pcm) => {
      const { begin, enqueue, finish } = get();
      await begin();
      enqueue(pcm);
      finish();
    },

    stop: () => {
      stopSources();
      set({ status: "idle", scheduledSeconds: 0 });
    },
  };
});

/** Seconds of audio heard so far in the current playback (read per frame, so not store state). */
export function playbackPosition(): number {
  const now = context?.currentTime ?? 0;
  return segments.reduce((sum, s) => sum + Math.min(s.duration, Math.max(0, now - s.start)), 0);
}
