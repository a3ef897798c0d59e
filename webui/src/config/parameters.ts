/**
 * The single table of generation parameters: defaults, slider ranges and labels. The store takes
 * its defaults from here and the parameter panel renders its sliders from it.
 * The model's knobs (temperature, top-p, ...) have no default here: each model's own come from
 * /v1/models (`defaults`), and a knob the user has not moved is left out of requests, so the server
 * applies the selected model's default (Turbo top-p 0.95, multilingual v2 repetition penalty 2, ...).
 */
import type { ResponseFormat, SpeechRequest } from "@/lib/api";

/** The model's generation knobs, by their UI names, with the request field each one sets. */
export const KNOB_FIELDS = {
  exaggeration: "exaggeration",
  cfgWeight: "cfg_weight",
  temperature: "temperature",
  topP: "top_p",
  minP: "min_p",
  repetitionPenalty: "repetition_penalty",
} as const satisfies Record<string, keyof SpeechRequest>;

export type Knob = keyof typeof KNOB_FIELDS;
export const KNOBS = Object.keys(KNOB_FIELDS) as Knob[];

/** What the selected model does with each knob: its default when left out, and the ones it ignores. */
export interface ModelKnobs {
  defaults: Partial<Record<Knob, number>>;
  ignored: readonly Knob[];
}

/** A model /v1/models says nothing about: no known defaults, nothing known to be ignored. */
export const UNKNOWN_MODEL_KNOBS: ModelKnobs = { defaults: {}, ignored: [] };

/** Each knob is `null` until the user moves it: the request leaves it out and the model's default applies. */
export type KnobValues = Record<Knob, number | null>;

export const UNSET_KNOBS: KnobValues = {
  exaggeration: null,
  cfgWeight: null,
  temperature: null,
  topP: null,
  minP: null,
  repetitionPenalty: null,
};

export interface GenerationParams extends KnobValues {
  model: string;
  voice: string;
  responseFormat: ResponseFormat;
  speed: number;
  /** null asks for a fresh random seed per generation; the seed used is kept with the session. */
  seed: number | null;
  /** Language of the text; offered only for models that speak more than English. */
  language: string;
}

export type SliderParam = "speed" | Knob;

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
  ...UNSET_KNOBS,
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

/**
 * Where a knob's slider rests for a model that lists no default for it (a server without `defaults`,
 * or before /v1/models answers): upstream's English defaults. Display only: an unmoved knob is never sent.
 */
export const DISPLAY_FALLBACK_KNOBS: Record<Knob, number> = {
  exaggeration: 0.5,
  cfgWeight: 0.5,
  temperature: 0.8,
  topP: 1,
  minP: 0.05,
  repetitionPenalty: 1.2,
};

/** Where a knob's slider rests until the user moves it: the model's default. */
export function knobDefault(knob: Knob, model: ModelKnobs): number {
  return model.defaults[knob] ?? DISPLAY_FALLBACK_KNOBS[knob];
}

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
    ...movedKnobs(params),
    ...(params.seed === null ? {} : { seed: params.seed }),
    // English is every model's default; English-only models would report an explicit one as ignored.
    ...(params.language === DEFAULT_LANGUAGE ? {} : { language: params.language }),
  };
}

/** The knobs the user moved, as request fields; the others are left to the model's defaults. */
function movedKnobs(params: KnobValues): Partial<SpeechRequest> {
  return Object.fromEntries(
    KNOBS.flatMap((knob) => (params[knob] === null ? [] : [[KNOB_FIELDS[knob], params[knob]]])),
  );
}
