import { useId, useState, type FormEvent } from "react";

import { Button } from "@/components/ui/button";
import { Panel } from "@/components/ui/panel";
import { useCloneVoice } from "@/features/voices/api/clone-voice";
import { useDeleteVoice } from "@/features/voices/api/delete-voice";
import { useVoices } from "@/features/voices/api/get-voices";
import { AudioClipField, isTooBig } from "@/features/voices/components/audio-clip-field";
import type { Recording } from "@/features/voices/hooks/use-voice-recorder";
import { chatterboxAPI, type Voice } from "@/lib/api";
import { notifyError, useNotifications } from "@/stores/notifications-store";
import { DEFAULT_PARAMS } from "@/config/parameters";
import { useSettingsStore } from "@/stores/settings-store";

/** Built-in voices ship with the server and cannot be deleted. */
function isBuiltIn(voice: Voice): boolean {
  return voice.id === DEFAULT_PARAMS.voice || voice.builtin === true || voice.built_in === true || voice.type === "builtin";
}

/** Plays a voice's reference recording; resolves once it has finished (or failed). */
async function previewVoice(voice: Voice) {
  let url: string | null = null;
  try {
    url = URL.createObjectURL(await chatterboxAPI.getVoiceSample(voice.id));
    const audio = new Audio(url);
    const finished = new Promise<void>((resolve, reject) => {
      audio.onended = () => resolve();
      audio.onerror = () => reject(new Error("the browser cannot decode this recording"));
    });
    await audio.play();
    await finished;
  } catch (error) {
    notifyError(`Could not play the sample of "${voice.name}"`, error);
  } finally {
    if (url) URL.revokeObjectURL(url);
  }
}

function CloneForm() {
  const id = useId();
  const [name, setName] = useState("");
  const [sample, setSample] = useState<Recording | null>(null);
  const cloneVoice = useCloneVoice();
  const setParam = useSettingsStore((s) => s.setParam);
  const tooBig = isTooBig(sample);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!sample || name.trim() === "" || tooBig) return;
    try {
      const created = await cloneVoice.mutateAsync({ name: name.trim(), sample: sample.blob, filename: sample.filename });
      setParam("voice", created.id);
      useNotifications.getState().notify({ kind: "info", title: "Voice cloned", message: `"${created.name}" is now selected.` });
      setName("");
      setSample(null); // (clears the file input too)
    } catch (error) {
      notifyError("Cloning failed", error);
    }
  }

  return (
    <form onSubmit={submit} className="space-y-3" aria-label="Clone a voice">
      <div className="space-y-1">
        <label htmlFor={`${id}-name`} className="text-sm font-medium text-slate-800">
          Voice name
        </label>
        <input
          id={`${id}-name`}
          value={name}
          onChange={(e) => setName(e.target.value)}
          maxLength={64}
          placeholder="e.g. Narrator"
          className="w-full rounded-lg border border-slate-300 px-2.5 py-2 text-sm focus:outline-2 focus:outline-indigo-600"
        />
      </div>
      <AudioClipField label="Reference audio (a few seconds of clear speech, up to 10 MB)" clip={sample} onChange={setSample} />
      <Button type="submit" variant="primary" disabled={!sample || name.trim() === "" || tooBig || cloneVoice.isPending}>
        {cloneVoice.isPending ? "Cloning…" : "Clone voice"}
      </Button>
    </form>
  );
}

function VoiceRow({ voice }: { voice: Voice }) {
  const [confirming, setConfirming] = useState(false);
  const [previewing, setPreviewing] = useState(false);
  const deleteVoice = useDeleteVoice();
  const selected = useSettingsStore((s) => s.params.voice === voice.id);
  const setParam = useSettingsStore((s) => s.setParam);

  async function confirmDelete() {
    try {
      await deleteVoice.mutateAsync(voice.id);
      if (useSettingsStore.getState().params.voice === voice.id) setParam("voice", DEFAULT_PARAMS.voice);
    } catch (error) {
      notifyError(`Could not delete "${voice.name}"`, error);
    } finally {
      setConfirming(false);
    }
  }

  return (
    <li className="flex flex-wrap items-center gap-2 py-2" data-testid="voice-row" data-voice-id={voice.id}>
      <div className="min-w-0 flex-1">
        <p className="truncate text-sm font-medium text-slate-900">
          {voice.name}
          {selected ? <span className="ml-2 rounded bg-indigo-100 px-1.5 py-0.5 text-[11px] text-indigo-700">selected</span> : null}
        </p>
        <p className="truncate font-mono text-[11px] text-slate-500">{voice.id}</p>
      </div>
      {confirming ? (
        <div role="group" aria-label={`Confirm deleting ${voice.name}`} className="flex items-center gap-1.5">
          <span className="text-xs text-red-700">Delete “{voice.name}”?</span>
          <Button size="sm" variant="danger" onClick={confirmDelete} disabled={deleteVoice.isPending} autoFocus>
            Confirm delete
          </Button>
          <Button size="sm" onClick={() => setConfirming(false)}>
            Cancel
          </Button>
        </div>
      ) : (
        <div className="flex items-center gap-1">
          <Button
            size="sm"
            variant="ghost"
            disabled={previewing}
            onClick={async () => {
              setPreviewing(true);
              await previewVoice(voice);
              setPreviewing(false);
            }}
            aria-label={`Preview ${voice.name}`}
          >
            {previewing ? "♪ Playing" : "▶ Preview"}
          </Button>
          <Button size="sm" variant="ghost" onClick={() => setParam("voice", voice.id)} disabled={selected} aria-label={`Use ${voice.name}`}>
            Use
          </Button>
          {isBuiltIn(voice) ? null : (
            <Button size="sm" variant="ghost" className="text-red-700" onClick={() => setConfirming(true)} aria-label={`Delete ${voice.name}`}>
              Delete
            </Button>
          )}
        </div>
      )}
    </li>
  );
}

/** Clone voices from an uploaded or recorded sample; preview, pick or delete saved ones. */
export function VoiceLibrary() {
  const id = useId();
  const { data: voices, isPending, error } = useVoices();
  return (
    <Panel title="Voice library" titleId={`${id}-title`}>
      <CloneForm />
      <div className="mt-4 border-t border-slate-100 pt-2">
        {isPending ? <p className="py-2 text-sm text-slate-500">Loading voices…</p> : null}
        {error ? <p className="py-2 text-sm text-red-700">Could not load voices: {error.message}</p> : null}
        <ul className="divide-y divide-slate-100" aria-label="Saved voices">
          {(voices ?? []).map((voice) => (
            <VoiceRow key={voice.id} voice={voice} />
          ))}
        </ul>
      </div>
    </Panel>
  );
}
