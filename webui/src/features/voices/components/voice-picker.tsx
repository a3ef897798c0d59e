import { useId } from "react";

import { selectClass } from "@/components/ui/select-class";
import { useVoices } from "@/features/voices/api/get-voices";
import { useSettingsStore } from "@/stores/settings-store";

/** A select of the server's library voices; `value` stays offered even before the list loads (or if it
 * was deleted elsewhere). */
export function VoiceSelect({ label, value, onChange }: { label: string; value: string; onChange: (voice: string) => void }) {
  const id = useId();
  const { data: voices = [], isPending } = useVoices();
  const options = voices.some((v) => v.id === value) ? voices : [{ id: value, name: value }, ...voices];
  return (
    <div className="space-y-1">
      <label htmlFor={id} className="text-sm font-medium text-slate-800">
        {label}
      </label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)} className={selectClass} aria-busy={isPending}>
        {options.map((v) => (
          <option key={v.id} value={v.id}>
            {v.name}
          </option>
        ))}
      </select>
    </div>
  );
}

/** Picks the voice to speak with (the generation settings' voice). */
export function VoicePicker() {
  const voice = useSettingsStore((s) => s.params.voice);
  const setParam = useSettingsStore((s) => s.setParam);
  return <VoiceSelect label="Voice" value={voice} onChange={(value) => setParam("voice", value)} />;
}
