/**
 * Plays PCM16 chunks through Web Audio as they arrive: each chunk is scheduled right after the
 * previous one, so playback starts with the first chunk instead of waiting for the whole file.
 * The same player replays finished audio. React reads its state through `subscribe`/`getState`.
 */
import { pcm16ToFloat32, SAMPLE_RATE } from "@/lib/pcm";

export type PlayerStatus = "idle" | "buffering" | "playing" | "ended";

export interface PlayerState {
  status: PlayerStatus;
  /** Seconds of audio received (and scheduled) so far. */
  scheduledSeconds: number;
}

interface Segment {
  start: number;
  duration: number;
  source: AudioBufferSourceNode;
}

// Scheduling slightly ahead of "now" avoids clipping the first samples of each chunk.
const LEAD_SECONDS = 0.05;

export class StreamingPcmPlayer {
  private context: AudioContext | null = null;
  private segments: Segment[] = [];
  private nextStart = 0;
  private inputComplete = false;
  private state: PlayerState = { status: "idle", scheduledSeconds: 0 };
  private listeners = new Set<() => void>();
  private readonly sampleRate: number;

  constructor(sampleRate = SAMPLE_RATE) {
    this.sampleRate = sampleRate;
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getState = (): PlayerState => this.state;

  /** Seconds of audio heard so far in the current playback. */
  position(): number {
    const now = this.context?.currentTime ?? 0;
    return this.segments.reduce((sum, s) => sum + Math.min(s.duration, Math.max(0, now - s.start)), 0);
  }

  /**
   * Stops whatever is playing and readies for new audio. Call it from the click that starts
   * playback: browsers only allow an AudioContext to make sound after a user gesture.
   */
  async begin(): Promise<void> {
    this.stopSources();
    this.segments = [];
    this.inputComplete = false;
    this.setState({ status: "buffering", scheduledSeconds: 0 });
    if (typeof AudioContext === "undefined") return; // No audio device API (tests): keep metrics only.
    this.context ??= new AudioContext();
    if (this.context.state === "suspended") await this.context.resume().catch(() => undefined);
    this.nextStart = 0;
  }

  enqueue(pcm: Uint8Array): void {
    const samples = pcm16ToFloat32(pcm);
    if (samples.length === 0) return;
    const duration = samples.length / this.sampleRate;
    const context = this.context;
    if (context) {
      const buffer = context.createBuffer(1, samples.length, this.sampleRate);
      buffer.copyToChannel(samples, 0);
      const source = context.createBufferSource();
      source.buffer = buffer;
      source.connect(context.destination);
      const start = Math.max(this.nextStart, context.currentTime + LEAD_SECONDS);
      source.start(start);
      source.onended = () => this.checkEnded();
      this.segments.push({ start, duration, source });
      this.nextStart = start + duration;
    }
    this.setState({ status: "playing", scheduledSeconds: this.state.scheduledSeconds + duration });
  }

  /** No more chunks will come; the player reports "ended" once the last one has played. */
  finish(): void {
    this.inputComplete = true;
    this.checkEnded();
  }

  /** Plays a complete clip from the start. */
  async play(pcm: Uint8Array): Promise<void> {
    await this.begin();
    this.enqueue(pcm);
    this.finish();
  }

  stop(): void {
    this.stopSources();
    this.segments = [];
    this.setState({ status: "idle", scheduledSeconds: 0 });
  }

  private stopSources(): void {
    for (const segment of this.segments) {
      segment.source.onended = null;
      try {
        segment.source.stop();
      } catch {
        // Already stopped.
      }
    }
  }

  private checkEnded(): void {
    if (!this.inputComplete || this.state.status === "idle") return;
    const now = this.context?.currentTime ?? Infinity;
    if (this.segments.every((s) => s.start + s.duration <= now + 0.01)) {
      this.setState({ ...this.state, status: "ended" });
    }
  }

  private setState(next: PlayerState): void {
    this.state = next;
    for (const listener of this.listeners) listener();
  }
}

/** The studio has one speaker: generation and replay share it so they never talk over each other. */
export const audioPlayer = new StreamingPcmPlayer();
