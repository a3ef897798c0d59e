/**
 * The single table of generation parameters: defaults, slider ranges and labels. The store takes
 * its defaults from here and the parameter panel renders its sliders from it.
 * Defaults follow the Chatterbox model's own (exaggeration 0.5, cfg weight 0.5, temperature 0.8).
 */
import type { ResponseFormat, SpeechRequest } from "@/lib/api";

export interface GenerationParams {
  model: string;
  voice: string;
  responseFormat: ResponseFormat;
  speed: number;
  temperature: number;
  exaggeration: number;
  cfgWeight: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  /** null asks for a fresh random seed per generation; the seed used is kept with the session. */
  seed: number | null;
  /** Language of the text; offered only for models that speak more than English. */
  language: string;
}

export type SliderParam = "speed" | "temperature" | "exaggeration" | "cfgWeight" | "topP" | "minP" | "repetitionPenalty";

export interface SliderSpec {
  key: SliderParam;
  label: string;
  hint: string;
  min: number;
  max: number;
  step: number;
}

export const DEFAULT_LANGUAGE = "en";

export const DEFAULT_PARAMS: GenerationParams = {
  model: "chatterbox",
  voice: "default",
  responseFormat: "wav",
  speed: 1,
  temperature: 0.8,
  exaggeration: 0.5,
  cfgWeight: 0.5,
  topP: 1,
  minP: 0.05,
  repetitionPenalty: 1.2,
  seed: null,
  language: DEFAULT_LANGUAGE,
};

export const SLIDERS: readonly SliderSpec[] = [
  { key: "exaggeration", label: "Exaggeration", hint: "Emotion intensity; higher is more expressive", min: 0.25, max: 2, step: 0.05 },
  { key: "cfgWeight", label: "CFG weight", hint: "Guidance strength; lower slows pacing", min: 0, max: 1, step: 0.05 },
  { key: "temperature", label: "Temperature", hint: "Sampling randomness", min: 0.05, max: 2, step: 0.05 },
  { key: "speed", label: "Speed", hint: "Playback speed of the result", min: 0.25, max: 4, step: 0.05 },
  { key: "topP", label: "Top-p", hint: "Nucleus sampling cut-off", min: 0.05, max: 1, step: 0.05 },
  { key: "minP", label: "Min-p", hint: "Drop tokens below this share of the top one", min: 0, max: 1, step: 0.01 },
  { key: "repetitionPenalty", label: "Repetition penalty", hint: "Discourages repeated speech tokens", min: 1, max: 2, step: 0.05 },
];

export const MAX_SEED = 2 ** 31 - 1;

/** A random seed for a generation that did not fix one, so the session can be reproduced. */
export function randomSeed(): number {
  return Math.floor(Math.random() * MAX_SEED);
}

/** The API body for `text` spoken with `params`, in `format` (the stream always carries PCM). */
export function toSpeechRequest(text: string, params: GenerationParams, format: ResponseFormat): SpeechRequest {
  return { input: text, ...toSpeechSettings(params, format) };
}

/** Everything of a speech request but its text: the settings of a live (socket) session. */
export function toSpeechSettings(params: GenerationParams, format: ResponseFormat): Omit<SpeechRequest, "input"> {
  return {
    model: params.model,
    voice: params.voice,
    response_format: format,
    speed: params.speed,
    temperature: params.temperature,
    exaggeration: params.exaggeration,
    cfg_weight: params.cfgWeight,
    top_p: params.topP,
    min_p: params.minP,
    repetition_penalty: params.repetitionPenalty,
    ...(params.seed === null ? {} : { seed: params.seed }),
    // English is every model's default; English-only models would report an explicit one as ignored.
    ...(params.language === DEFAULT_LANGUAGE ? {} : { language: params.language }),
  };
}
