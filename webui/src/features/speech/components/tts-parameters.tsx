import { useId, type ReactNode } from "react";

import { Button } from "@/components/ui/button";
import { Panel } from "@/components/ui/panel";
import { SliderField } from "@/components/ui/slider-field";
import {
  DEFAULT_PARAMS,
  MAX_SEED,
  SLIDERS,
  UNKNOWN_MODEL_KNOBS,
  knobDefault,
  type ModelKnobs,
  type SliderSpec,
} from "@/config/parameters";
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

/** One tuning slider: speed is the studio's own; a model knob rests on the selected model's default. */
function ParameterSlider({ spec, model }: { spec: SliderSpec; model: ModelKnobs }) {
  const value = useSettingsStore((s) => s.params[spec.key]);
  const setParam = useSettingsStore((s) => s.setParam);
  const resetParam = useSettingsStore((s) => s.resetParam);
  const knob = spec.key === "speed" ? null : spec.key;
  const defaultValue = knob === null ? DEFAULT_PARAMS.speed : knobDefault(knob, model);
  const ignored = knob !== null && model.ignored.includes(knob);
  return (
    <SliderField
      label={spec.label}
      hint={ignored ? `${spec.hint} (this model has no use for it)` : spec.hint}
      min={spec.min}
      max={spec.max}
      step={spec.step}
      value={value ?? defaultValue}
      defaultValue={defaultValue}
      // A knob is the user's once moved, even back onto the default (it is then sent as set).
      changed={knob === null ? value !== defaultValue : value !== null}
      disabled={ignored}
      onChange={(moved) => setParam(spec.key, moved)}
      onReset={() => resetParam(spec.key)}
    />
  );
}

/**
 * The tuning sliders, each with its value and a reset, plus the seed. `pickers` are the voice and
 * model selects and `model` what the selected model does with each knob (its defaults, the knobs it
 * ignores), composed in by the app so this feature does not reach into the voices/models ones.
 */
export function TTSParameters({ pickers, model = UNKNOWN_MODEL_KNOBS }: { pickers?: ReactNode; model?: ModelKnobs }) {
  const id = useId();
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
          <ParameterSlider key={spec.key} spec={spec} model={model} />
        ))}
        <SeedField />
      </div>
    </Panel>
  );
}
