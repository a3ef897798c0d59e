import { useId, type ReactNode } from "react";

import { Button } from "@/components/ui/button";
import { Panel } from "@/components/ui/panel";
import { SliderField } from "@/components/ui/slider-field";
import { DEFAULT_PARAMS, MAX_SEED, SLIDERS } from "@/config/parameters";
import { useSettingsStore } from "@/stores/settings-store";

function SeedField() {
  const id = useId();
  const seed = useSettingsStore((s) => s.params.seed);
  const setParam = useSettingsStore((s) => s.setParam);
  return (
    <div className="space-y-1">
      <label htmlFor={id} className="text-sm font-medium text-slate-800">
        Seed
      </label>
      <div className="flex gap-2">
        <input
          id={id}
          type="number"
          inputMode="numeric"
          min={0}
          max={MAX_SEED}
          placeholder="random"
          value={seed ?? ""}
          onChange={(e) => {
            const value = e.target.value === "" ? null : Math.trunc(Number(e.target.value));
            setParam("seed", value === null || Number.isNaN(value) ? null : Math.min(Math.max(value, 0), MAX_SEED));
          }}
          aria-describedby={`${id}-hint`}
          className="w-full rounded-lg border border-slate-300 px-2.5 py-2 text-sm focus:outline-2 focus:outline-indigo-600"
        />
        <Button size="sm" onClick={() => setParam("seed", null)} disabled={seed === null} aria-label="Use a random seed">
          Random
        </Button>
      </div>
      <p id={`${id}-hint`} className="text-xs text-slate-500">
        Empty picks a new seed each time; the one used is saved with the session.
      </p>
    </div>
  );
}

/**
 * The tuning sliders, each with its value and a reset, plus the seed. `pickers` are the voice and
 * model selects, composed in by the app so this feature does not reach into the voices/models ones.
 */
export function TTSParameters({ pickers }: { pickers?: ReactNode }) {
  const id = useId();
  const params = useSettingsStore((s) => s.params);
  const setParam = useSettingsStore((s) => s.setParam);
  const resetParam = useSettingsStore((s) => s.resetParam);
  const resetParams = useSettingsStore((s) => s.resetParams);
  return (
    <Panel
      title="Parameters"
      titleId={`${id}-title`}
      actions={
        <Button size="sm" variant="ghost" onClick={resetParams}>
          Reset all
        </Button>
      }
    >
      <div className="space-y-4">
        {pickers ? <div className="grid grid-cols-2 gap-3">{pickers}</div> : null}
        {SLIDERS.map((spec) => (
          <SliderField
            key={spec.key}
            label={spec.label}
            hint={spec.hint}
            min={spec.min}
            max={spec.max}
            step={spec.step}
            value={params[spec.key]}
            defaultValue={DEFAULT_PARAMS[spec.key]}
            onChange={(value) => setParam(spec.key, value)}
            onReset={() => resetParam(spec.key)}
          />
        ))}
        <SeedField />
      </div>
    </Panel>
  );
}
