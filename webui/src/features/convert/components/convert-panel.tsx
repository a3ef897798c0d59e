import { useEffect, useId, useRef, useState, type FormEvent } from "react";

import { Button } from "@/components/ui/button";
import { Panel } from "@/components/ui/panel";
import { selectClass } from "@/components/ui/select-class";
import { DEFAULT_PARAMS } from "@/config/parameters";
import { useConvertVoice } from "@/features/convert/api/convert-voice";
import { useVoices } from "@/features/voices/api/get-voices";
import { useVoiceRecorder, type Recording } from "@/features/voices/hooks/use-voice-recorder";
import type { ResponseFormat } from "@/lib/api";
import { notifyError } from "@/stores/notifications-store";

const MAX_SOURCE_BYTES = 10 * 1024 * 1024;
const FORMATS: ResponseFormat[] = ["wav", "mp3", "opus", "flac"];

interface Converted {
  url: string;
  filename: string;
  voiceName: string;
}

/** Speaks an uploaded or recorded clip again in a voice of the library: play it, download it. */
export function ConvertPanel() {
  const id = useId();
  const [source, setSource] = useState<Recording | null>(null);
  const [voice, setVoice] = useState(DEFAULT_PARAMS.voice);
  const [format, setFormat] = useState<ResponseFormat>("wav");
  const [result, setResult] = useState<Converted | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  const recorder = useVoiceRecorder(setSource);
  const convert = useConvertVoice();
  const { data: voices = [], isPending } = useVoices();
  const tooBig = (source?.blob.size ?? 0) > MAX_SOURCE_BYTES;
  const options = voices.some((v) => v.id === voice) ? voices : [{ id: voice, name: voice }, ...voices];

  // Each result owns an object URL: release it when replaced or when the panel goes away.
  useEffect(() => () => (result ? URL.revokeObjectURL(result.url) : undefined), [result]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!source || tooBig) return;
    try {
      const audio = await convert.mutateAsync({ source: source.blob, filename: source.filename, voice, format });
      const stem = source.filename.replace(/\.[^.]*$/, "") || "recording";
      const voiceName = options.find((v) => v.id === voice)?.name ?? voice;
      setResult({ url: URL.createObjectURL(audio), filename: `${stem}-as-${voiceName}.${format}`, voiceName });
    } catch (error) {
      notifyError("Conversion failed", error);
    }
  }

  return (
    <Panel title="Convert a recording" titleId={`${id}-title`}>
      <form onSubmit={submit} className="space-y-3" aria-label="Convert a recording">
        <div className="space-y-1">
          <label htmlFor={`${id}-file`} className="text-sm font-medium text-slate-800">
            Speech to convert (any audio file up to 10 MB)
          </label>
          <input
            ref={fileInput}
            id={`${id}-file`}
            type="file"
            accept="audio/*"
            onChange={(e) => {
              const file = e.target.files?.[0];
              setSource(file ? { blob: file, filename: file.name } : null);
            }}
            className="block w-full text-sm text-slate-700 file:mr-3 file:rounded-lg file:border-0 file:bg-slate-100 file:px-3 file:py-2 file:text-sm file:font-medium hover:file:bg-slate-200"
          />
          {recorder.supported ? (
            <div className="flex items-center gap-2 pt-1 text-sm">
              <span className="text-slate-500">or</span>
              <Button size="sm" variant={recorder.recording ? "danger" : "secondary"} onClick={recorder.recording ? recorder.stop : recorder.start}>
                {recorder.recording ? "■ Stop recording" : "● Record"}
              </Button>
              {source && !recorder.recording ? <span className="truncate text-slate-600">{source.filename}</span> : null}
            </div>
          ) : null}
          {tooBig ? <p className="text-xs text-red-700">That file is larger than 10 MB.</p> : null}
        </div>
        <div className="grid gap-3 sm:grid-cols-2">
          <div className="space-y-1">
            <label htmlFor={`${id}-voice`} className="text-sm font-medium text-slate-800">
              Target voice
            </label>
            <select id={`${id}-voice`} value={voice} onChange={(e) => setVoice(e.target.value)} className={selectClass} aria-busy={isPending}>
              {options.map((v) => (
                <option key={v.id} value={v.id}>
                  {v.name}
                </option>
              ))}
            </select>
          </div>
          <div className="space-y-1">
            <label htmlFor={`${id}-format`} className="text-sm font-medium text-slate-800">
              File type
            </label>
            <select id={`${id}-format`} value={format} onChange={(e) => setFormat(e.target.value as ResponseFormat)} className={selectClass}>
              {FORMATS.map((f) => (
                <option key={f} value={f}>
                  {f}
                </option>
              ))}
            </select>
          </div>
        </div>
        <Button type="submit" variant="primary" disabled={!source || tooBig || convert.isPending}>
          {convert.isPending ? "Converting…" : "Convert"}
        </Button>
      </form>
      {result ? (
        <div className="mt-4 space-y-2 border-t border-slate-100 pt-3" aria-label="Converted audio" role="group">
          <p className="text-sm text-slate-700">In the voice of “{result.voiceName}”:</p>
          <audio controls src={result.url} className="w-full" data-testid="converted-audio" />
          <a href={result.url} download={result.filename} className="text-sm font-medium text-indigo-700 hover:underline">
            Download {result.filename}
          </a>
        </div>
      ) : null}
    </Panel>
  );
}
