import { useEffect, useId, useState, useSyncExternalStore } from "react";

import { Button } from "@/components/ui/button";
import { Panel } from "@/components/ui/panel";
import { Waveform } from "@/features/speech/components/waveform";
import { downloadSession, sessionPcm } from "@/features/speech/download";
import { RESPONSE_FORMATS, type ResponseFormat } from "@/lib/api";
import { notifyError } from "@/lib/notifications";
import { audioPlayer } from "@/lib/pcm-player";
import { selectActiveSession, useStudioStore, type SessionMetrics } from "@/lib/store";

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
      setPosition(audioPlayer.position());
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
  const session = useStudioStore(selectActiveSession);
  const format = useStudioStore((s) => s.params.responseFormat);
  const setParam = useStudioStore((s) => s.setParam);
  const player = useSyncExternalStore(audioPlayer.subscribe, audioPlayer.getState);
  const playing = player.status === "playing";
  const position = usePlaybackPosition(playing);
  const [downloading, setDownloading] = useState(false);

  const chunks = session?.audioChunks ?? [];
  const clipSeconds = session?.metrics?.durationSeconds ?? player.scheduledSeconds;
  const progress = player.status === "ended" ? 1 : clipSeconds > 0 ? Math.min(1, position / clipSeconds) : 0;
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
          <p role="status" aria-live="polite" data-testid="player-status" data-player={player.status} className="truncate text-slate-700">
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
            <Button onClick={() => audioPlayer.stop()}>■ Stop</Button>
          ) : (
            <Button onClick={() => session && void audioPlayer.play(sessionPcm(session))} disabled={!canReplay}>
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
