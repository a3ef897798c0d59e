import { useEffect, useId, useRef } from "react";

import { Button } from "@/components/ui/button";
import { useVoiceRecorder, type Recording } from "@/features/voices/hooks/use-voice-recorder";

/** The server's largest upload, a voice sample or a conversion source (MAX_VOICE_UPLOAD_BYTES' default). */
export const MAX_CLIP_BYTES = 10 * 1024 * 1024;

export function isTooBig(clip: Recording | null): boolean {
  return (clip?.blob.size ?? 0) > MAX_CLIP_BYTES;
}

/**
 * An audio clip picked as a file or recorded from the microphone (where the browser can), with the size
 * check. Shared by voice cloning and voice conversion; `clip` set back to null clears the file input.
 */
export function AudioClipField({ label, clip, onChange }: { label: string; clip: Recording | null; onChange: (clip: Recording | null) => void }) {
  const id = useId();
  const fileInput = useRef<HTMLInputElement>(null);
  const recorder = useVoiceRecorder(onChange);

  useEffect(() => {
    if (clip === null && fileInput.current) fileInput.current.value = "";
  }, [clip]);

  return (
    <div className="space-y-1">
      <label htmlFor={id} className="text-sm font-medium text-slate-800">
        {label}
      </label>
      <input
        ref={fileInput}
        id={id}
        type="file"
        accept="audio/*"
        onChange={(e) => {
          const file = e.target.files?.[0];
          onChange(file ? { blob: file, filename: file.name } : null);
        }}
        className="block w-full text-sm text-slate-700 file:mr-3 file:rounded-lg file:border-0 file:bg-slate-100 file:px-3 file:py-2 file:text-sm file:font-medium hover:file:bg-slate-200"
      />
      {recorder.supported ? (
        <div className="flex items-center gap-2 pt-1 text-sm">
          <span className="text-slate-500">or</span>
          <Button size="sm" variant={recorder.recording ? "danger" : "secondary"} onClick={recorder.recording ? recorder.stop : recorder.start}>
            {recorder.recording ? "■ Stop recording" : "● Record"}
          </Button>
          {clip && !recorder.recording ? <span className="truncate text-slate-600">{clip.filename}</span> : null}
        </div>
      ) : null}
      {isTooBig(clip) ? <p className="text-xs text-red-700">That file is larger than 10 MB.</p> : null}
    </div>
  );
}
