import { useId } from "react";

import { selectClass } from "@/components/ui/select-class";
import { useModels } from "@/features/models/api/get-models";
import { describeModel } from "@/features/models/describe-model";
import { useSettingsStore } from "@/stores/settings-store";

/** Picks the model name sent with each request. */
export function ModelPicker() {
  const id = useId();
  const model = useSettingsStore((s) => s.params.model);
  const setParam = useSettingsStore((s) => s.setParam);
  const { data: models = [] } = useModels();
  const options = models.some((m) => m.id === model) ? models : [{ id: model }, ...models];
  const description = describeModel(models.find((m) => m.id === model));
  return (
    <div className="space-y-1">
      <label htmlFor={id} className="text-sm font-medium text-slate-800">
        Model
      </label>
      <select id={id} value={model} onChange={(e) => setParam("model", e.target.value)} className={selectClass}>
        {options.map((m) => (
          <option key={m.id} value={m.id}>
            {m.id}
          </option>
        ))}
      </select>
      {description ? (
        <p data-testid="model-description" className="text-xs text-slate-500">
          {description}
        </p>
      ) : null}
    </div>
  );
}
