import { useEffect, useId } from "react";

import { selectClass } from "@/components/ui/select-class";
import { useModels } from "@/features/models/api/get-models";
import { DEFAULT_LANGUAGE } from "@/config/parameters";
import { useSettingsStore } from "@/stores/settings-store";

/**
 * Picks the language of the text, from the languages /v1/models lists for the selected model.
 * Shown only for a model that speaks more than one (the multilingual variant); otherwise the
 * language falls back to English so a stale choice never reaches an English-only model.
 */
export function LanguagePicker() {
  const id = useId();
  const model = useSettingsStore((s) => s.params.model);
  const language = useSettingsStore((s) => s.params.language);
  const setParam = useSettingsStore((s) => s.setParam);
  const { data: models, isSuccess } = useModels();
  const languages = models?.find((m) => m.id === model)?.languages ?? {};
  const codes = Object.keys(languages).sort((a, b) => languages[a].localeCompare(languages[b]));

  // A boolean dependency: `languages` is a new object on every render.
  const languageUnavailable = isSuccess && language !== DEFAULT_LANGUAGE && !(language in languages);
  useEffect(() => {
    if (languageUnavailable) setParam("language", DEFAULT_LANGUAGE);
  }, [languageUnavailable, setParam]);

  if (codes.length < 2) return null;
  return (
    <div className="space-y-1">
      <label htmlFor={id} className="text-sm font-medium text-slate-800">
        Language
      </label>
      <select id={id} value={language} onChange={(e) => setParam("language", e.target.value)} className={selectClass}>
        {codes.map((code) => (
          <option key={code} value={code}>
            {languages[code]}
          </option>
        ))}
      </select>
    </div>
  );
}
