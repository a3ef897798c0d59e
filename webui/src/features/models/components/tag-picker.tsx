import { useId } from "react";

import { Button } from "@/components/ui/button";
import { useModels } from "@/features/models/api/get-models";
import { useSettingsStore } from "@/stores/settings-store";

/**
 * Paralinguistic tags ([laugh], [cough], ...) of the selected model, from /v1/models: a click hands the
 * tag to `onInsert`. Shown only for models that voice tags (Turbo, Nano); the others drop them.
 */
export function TagPicker({ onInsert }: { onInsert: (tag: string) => void }) {
  const id = useId();
  const model = useSettingsStore((s) => s.params.model);
  const { data: models } = useModels();
  const tags = models?.find((m) => m.id === model)?.paralinguistic_tags ?? [];
  if (tags.length === 0) return null;
  return (
    <div role="group" aria-labelledby={id} className="space-y-1">
      <p id={id} className="text-sm font-medium text-slate-800">
        Tags
      </p>
      <div className="flex flex-wrap gap-1">
        {tags.map((tag) => (
          <Button key={tag} size="sm" variant="ghost" onClick={() => onInsert(tag)} title={`Add ${tag} to the text`}>
            {tag}
          </Button>
        ))}
      </div>
    </div>
  );
}
