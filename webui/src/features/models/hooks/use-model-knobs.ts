import { KNOBS, KNOB_FIELDS, UNKNOWN_MODEL_KNOBS, type ModelKnobs } from "@/config/parameters";
import { useModels } from "@/features/models/api/get-models";
import type { Model } from "@/lib/api";
import { useSettingsStore } from "@/stores/settings-store";

/** A /v1/models card's knob defaults and ignored knobs, by the UI's knob names. */
export function modelKnobs(model: Model | undefined): ModelKnobs {
  if (!model) return UNKNOWN_MODEL_KNOBS;
  const defaults = model.defaults ?? {};
  const ignored = model.ignored_parameters ?? [];
  return {
    defaults: Object.fromEntries(
      KNOBS.flatMap((knob) => (KNOB_FIELDS[knob] in defaults ? [[knob, defaults[KNOB_FIELDS[knob]]]] : [])),
    ),
    ignored: KNOBS.filter((knob) => ignored.includes(KNOB_FIELDS[knob])),
  };
}

/** What the selected model does with each knob (unknown until /v1/models answers). */
export function useModelKnobs(): ModelKnobs {
  const model = useSettingsStore((s) => s.params.model);
  const { data: models } = useModels();
  const card = models?.find((m) => m.id === model);
  return modelKnobs(card);
}
