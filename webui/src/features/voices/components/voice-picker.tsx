import { useId } from "react";

import { selectClass } from "@/components/ui/select-class";
import { useVoices } from "@/features/voices/api/get-voices";
import { useSettingsStore } from "@/stores/settings-store";

/** Picks the voice to speak with from the server's library. */
export function VoicePicker() {
  const id = useId();
  const voice = useSettingsStore((s) => s.params.voice);
  const setParam = useSettingsStore((s) => s.setParam);
  const { data: voices = [], isPending } = useVoices();
  // Keep the stored choice visible even before the list loads (or if it was deleted elsewhere).
  const options = voices.some((v) => v.id === voice) ? voices : [{ id: voice, name: voice }, ...voices];
  return (
    <div className="space-y-1">
      <label htmlFor={id} className="text-sm font-medium text-slate-800">
        Voice
      </label>
      <select id={id} value={voice} onChange={(e) => setParam("voice", e.target.value)} className={selectClass} aria-busy={isPending}>
        {options.map((v) => (
          <option key={v.id} value={v.id}>
            {v.name}
          </option>
        ))}
      </select>
    </div>
  );
}
