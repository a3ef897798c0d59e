import { useEffect, useId, useState } from "react";

import { Button } from "@/components/ui/button";
import { Panel } from "@/components/ui/panel";
import { Waveform } from "@/features/speech/components/waveform";
import { downloadSession, sessionPcm } from "@/features/speech/download";
import { RESPONSE_FORMATS, type ResponseFormat } from "@/lib/api";
import { selectActiveSession, useSessionsStore, type SessionMetrics } from "@/features/sessions/stores/sessions-store";
import { playbackPosition, usePlaybackStore } from "@/features/speech/stores/playback-store";
import { notifyError } from "@/stores/notifications-store";
import { useSettingsStore } from "@/stores/settings-store";

function formatSeconds(seconds: number): string {
  const whole = Math.max(0, seconds);
  const minutes = Math.floor(whole / 60);
  return `${minutes}:${(whole - minutes * 60).toFixed(1).padStart(4, "0")}`;
}

/** Seconds heard so far, polled once per frame while audio plays. */
function usePlaybackPosition(playing: boolean): number {
  const [position, setPosition] = useState(0);
  useEffect(() => {
    if (!playing) return;
    let frame = requestAnimationFrame(function tick() {
      setPosition(playbackPosition());
      frame = requestAnimationFrame(tick);
    });
    return () => cancelAnimationFrame(frame);
  }, [playing]);
  return playing ? position : 0;
}

function Metrics({ metrics }: { metrics: SessionMetrics | null }) {
  const items = [
    ["Time to first audio", metrics?.timeToFirstAudioMs == null ? "—" : `${Math.round(metrics.timeToFirstAudioMs)} ms`, "ttfa"],
    ["Real-time factor", metrics?.realTimeFactor == null ? "—" : `${metrics.realTimeFactor.toFixed(2)}×`, "rtf"],
    ["Duration", metrics ? `${metrics.durationSeconds.toFixed(2)} s` : "—", "duration"],
  ] as const;
  return (
    <dl className="grid grid-cols-3 gap-2 text-center" aria-label="Generation metrics">
      {items.map(([label, value, key]) => (
        <div key={key} className="rounded-lg bg-slate-50 px-2 py-2">
          <dt className="text-[11px] tracking-wide text-slate-500 uppercase">{label}</dt>
          <dd className="font-mono text-sm font-semibold text-slate-900 tabular-nums" data-testid={`metric-${key}`}>
            {value}
          </dd>
        </div>
      ))}
    </dl>
  );
}

/** Plays the active session (live while it streams), with waveform, metrics and download. */
export function StreamingAudioPlayer() {
  const id = useId();
  const session = useSessionsStore(selectActiveSession);
  const sessionId = session?.id ?? null;
  const format = useSettingsStore((s) => s.params.responseFormat);
  const setParam = useSettingsStore((s) => s.setParam);
  const playerStatus = usePlaybackStore((s) => s.status);
  const scheduledSeconds = usePlaybackStore((s) => s.scheduledSeconds);
  const { play, stop } = usePlaybackStore.getState();
  const playing = playerStatus === "playing";
  const position = usePlaybackPosition(playing);
  const [downloading, setDownloading] = useState(false);

  const chunks = session?.audioChunks ?? [];
  // Picking another session silences the one playing (a generation keeps recording quietly);
  // a session that just started generating owns the speaker, so its start does not count.
  const sessionGenerating = session?.status === "generating";
  useEffect(() => {
    if (!sessionGenerating) stop();
  }, [sessionId]); // Only a change of session stops playback.

  const clipSeconds = session?.metrics?.durationSeconds ?? scheduledSeconds;
  const progress = playerStatus === "ended" ? 1 : clipSeconds > 0 ? Math.min(1, position / clipSeconds) : 0;
  const canReplay = session?.status === "done" && chunks.length > 0;

  const statusText = !session
    ? "Nothing generated yet"
    : session.status === "generating"
      ? chunks.length === 0
        ? "Waiting for the first audio…"
        : "Streaming"
      : session.status === "error"
        ? `Failed: ${session.error ?? "unknown error"}`
        : session.status === "cancelled"
          ? (session.error ?? "Stopped")
          : playing
            ? "Playing"
            : "Ready";

  return (
    <Panel title="Player" titleId={`${id}-title`}>
      <div className="space-y-3">
        <div className="flex items-center justify-between gap-2 text-sm">
          <p role="status" aria-live="polite" data-testid="player-status" data-player={playerStatus} className="truncate text-slate-700">
            {statusText}
          </p>
          <span className="shrink-0 font-mono text-xs text-slate-500 tabular-nums" data-testid="player-time">
            {formatSeconds(progress * clipSeconds)} / {formatSeconds(clipSeconds)}
          </span>
        </div>
        <div
          role="progressbar"
          aria-label="Playback progress"
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={Math.round(progress * 100)}
          className="rounded-lg bg-slate-50 px-2"
        >
          <Waveform chunks={chunks} progress={progress} />
        </div>
        <Metrics metrics={session?.metrics ?? null} />
        <div className="flex flex-wrap items-center gap-2">
          {playing ? (
            <Button onClick={stop}>■ Stop</Button>
          ) : (
            <Button onClick={() => session && void play(sessionPcm(session))} disabled={!canReplay}>
              ▶ Play
            </Button>
          )}
          <div className="ml-auto flex items-center gap-2">
            <label htmlFor={`${id}-format`} className="text-sm text-slate-700">
              Format
            </label>
            <select
              id={`${id}-format`}
              value={format}
              onChange={(e) => setParam("responseFormat", e.target.value as ResponseFormat)}
              className="rounded-lg border border-slate-300 bg-white px-2 py-1.5 text-sm focus:outline-2 focus:outline-indigo-600"
            >
              {RESPONSE_FORMATS.map((f) => (
                <option key={f} value={f}>
                  {f}
                </option>
              ))}
            </select>
            <Button
              variant="primary"
              disabled={!canReplay || downloading}
              onClick={async () => {
                if (!session) return;
                setDownloading(true);
                try {
                  await downloadSession(session, format);
                } catch (error) {
                  notifyError("Download failed", error);
                } finally {
                  setDownloading(false);
                }
              }}
            >
              {downloading ? "Preparing…" : "Download"}
            </Button>
          </div>
        </div>
      </div>
    </Panel>
  );
}
