import { useEffect, useId } from "react";

import { chatterboxAPI } from "@/lib/api";
import { env } from "@/config/env";
import { useSettingsStore } from "@/stores/settings-store";

/** Optional bearer key for servers started with API keys; a key typed here wins over the build's. */
export function ConnectionSettings() {
  const id = useId();
  const apiKey = useSettingsStore((s) => s.apiKey);
  const setApiKey = useSettingsStore((s) => s.setApiKey);

  useEffect(() => chatterboxAPI.setApiKey(apiKey || env.apiKey), [apiKey]);

  return (
    <details className="relative">
      <summary className="cursor-pointer list-none rounded-lg px-2.5 py-1.5 text-sm text-slate-200 hover:bg-white/10 focus-visible:outline-2 focus-visible:outline-white">
        API key{apiKey ? " ✓" : ""}
      </summary>
      <div className="absolute right-0 z-40 mt-2 w-72 rounded-lg border border-slate-200 bg-white p-3 text-slate-900 shadow-lg">
        <label htmlFor={id} className="text-sm font-medium">
          API key
        </label>
        <input
          id={id}
          type="password"
          autoComplete="off"
          value={apiKey}
          onChange={(e) => setApiKey(e.target.value)}
          placeholder="Bearer key, if the server needs one"
          className="mt-1 w-full rounded-lg border border-slate-300 px-2.5 py-2 text-sm focus:outline-2 focus:outline-indigo-600"
        />
        <p className="mt-1 text-xs text-slate-500">Sent as "Authorization: Bearer …" with every request.</p>
      </div>
    </details>
  );
}
