import type { Model } from "@/lib/api";

const VARIANT_NAMES: Record<string, string> = {
  english: "Chatterbox English",
  multilingual: "Chatterbox Multilingual",
  turbo: "Chatterbox Turbo",
  nano: "Chatterbox Nano",
};

/** One line about the served model behind an id: variant (and release), languages, tags. */
export function describeModel(model: Model | undefined): string | null {
  if (!model?.variant) return null;
  const name = VARIANT_NAMES[model.variant] ?? model.variant;
  const languages = Object.keys(model.languages ?? {}).length;
  const parts = [model.version ? `${name} ${model.version.toUpperCase()}` : name];
  parts.push(languages > 1 ? `${languages} languages` : "English");
  const tags = model.paralinguistic_tags?.length ?? 0;
  if (tags > 0) parts.push(`${tags} paralinguistic tags`);
  return parts.join(" · ");
}
