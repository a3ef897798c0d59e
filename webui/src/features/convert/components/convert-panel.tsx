import { useEffect, useId, useState, type FormEvent } from "react";

import { Button } from "@/components/ui/button";
import { Panel } from "@/components/ui/panel";
import { selectClass } from "@/components/ui/select-class";
import { DEFAULT_PARAMS } from "@/config/parameters";
import { useConvertVoice } from "@/features/convert/api/convert-voice";
import { useVoices } from "@/features/voices/api/get-voices";
import { VoiceSelect } from "@/features/voices/components/voice-picker";
import { AudioClipField, isTooBig } from "@/features/voices/components/audio-clip-field";
import type { Recording } from "@/features/voices/hooks/use-voice-recorder";
import type { ResponseFormat } from "@/lib/api";
import { notifyError } from "@/stores/notifications-store";

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
  const convert = useConvertVoice();
  const { data: voices = [] } = useVoices();
  const tooBig = isTooBig(source);

  // Each result owns an object URL: release it when replaced or when the panel goes away.
  useEffect(() => () => (result ? URL.revokeObjectURL(result.url) : undefined), [result]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!source || tooBig) return;
    try {
      const audio = await convert.mutateAsync({ source: source.blob, filename: source.filename, voice, format });
      const stem = source.filename.replace(/\.[^.]*$/, "") || "recording";
      const voiceName = voices.find((v) => v.id === voice)?.name ?? voice;
      setResult({ url: URL.createObjectURL(audio), filename: `${stem}-as-${voiceName}.${format}`, voiceName });
    } catch (error) {
      notifyError("Conversion failed", error);
    }
  }

  return (
    <Panel title="Convert a recording" titleId={`${id}-title`}>
      <form onSubmit={submit} className="space-y-3" aria-label="Convert a recording">
        <AudioClipField label="Speech to convert (any audio file up to 10 MB)" clip={source} onChange={setSource} />
        <div className="grid gap-3 sm:grid-cols-2">
          <VoiceSelect label="Target voice" value={voice} onChange={setVoice} />
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
