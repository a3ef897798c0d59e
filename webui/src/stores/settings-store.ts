/**
 * The studio's settings, shared by every feature: the generation parameters (voice, model,
 * language, tuning, seed) and the API key. Persisted across reloads.
 */
import { create } from "zustand";
import { createJSONStorage, persist } from "zustand/middleware";

import { DEFAULT_PARAMS, DISPLAY_FALLBACK_KNOBS, KNOBS, UNSET_KNOBS, type GenerationParams } from "@/config/parameters";
import { createStudioStorage } from "@/lib/persist-storage";

export interface SettingsState {
  params: GenerationParams;
  apiKey: string;
}

export interface SettingsActions {
  setParam: <K extends keyof GenerationParams>(key: K, value: GenerationParams[K]) => void;
  resetParam: (key: keyof GenerationParams) => void;
  resetParams: () => void;
  setApiKey: (key: string) => void;
}

export const useSettingsStore = create<SettingsState & SettingsActions>()(
  persist(
    (set) => ({
      params: DEFAULT_PARAMS,
      apiKey: "",
      setParam: (key, value) =>
        set((state) => {
          // Another model has other defaults: knobs tuned for the last one start again from the new one's.
          const modelChanged = key === "model" && value !== state.params.model;
          return { params: { ...state.params, ...(modelChanged ? UNSET_KNOBS : {}), [key]: value } };
        }),
      resetParam: (key) => set((state) => ({ params: { ...state.params, [key]: DEFAULT_PARAMS[key] } })),
      resetParams: () =>
        // Voice and model are choices, not tuning: "reset all" keeps them.
        set((state) => ({
          params: { ...DEFAULT_PARAMS, voice: state.params.voice, model: state.params.model, language: state.params.language },
        })),
      setApiKey: (apiKey) => set({ apiKey }),
    }),
    {
      name: "chatterbox-studio-settings",
      version: 2,
      // Settings were kept with the sessions under "chatterbox-studio" before each store had its own key.
      storage: createJSONStorage(() => createStudioStorage({ readsFrom: "chatterbox-studio" })),
      partialize: (state) => ({ params: state.params, apiKey: state.apiKey }),
      migrate: (persisted, version) => (version < 2 ? unsetVersion1Knobs(persisted as Partial<SettingsState>) : persisted),
      merge: (persisted, current) => {
        const saved = (persisted ?? {}) as Partial<SettingsState>;
        // Parameters added in later versions get their defaults.
        return { ...current, apiKey: saved.apiKey ?? current.apiKey, params: { ...DEFAULT_PARAMS, ...saved.params } };
      },
    },
  ),
);

/**
 * Version 1 kept every knob as a number and sent it to every model, starting from fixed English values
 * (`DISPLAY_FALLBACK_KNOBS`): a knob still at that value was never moved, so it now follows the model.
 */
function unsetVersion1Knobs(saved: Partial<SettingsState>): Partial<SettingsState> {
  if (!saved?.params) return saved;
  const params: Record<string, unknown> = { ...saved.params };
  for (const knob of KNOBS) if (params[knob] === DISPLAY_FALLBACK_KNOBS[knob]) params[knob] = null;
  return { ...saved, params: params as unknown as GenerationParams };
}
