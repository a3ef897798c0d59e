/**
 * Build-time configuration, read once from `import.meta.env`.
 *
 * VITE_API_URL: where the chatterbox-server API lives. Empty means same origin, which is how the
 * server itself serves this bundle at `/`.
 * VITE_API_KEY: an optional bearer key baked into the bundle (users can also enter one in the UI).
 */
export interface AppEnv {
  apiUrl: string;
  apiKey: string;
}

export function parseEnv(raw: Record<string, unknown>): AppEnv {
  const apiUrl = typeof raw.VITE_API_URL === "string" ? raw.VITE_API_URL.trim() : "";
  if (apiUrl !== "" && !/^https?:\/\//.test(apiUrl) && !apiUrl.startsWith("/")) {
    throw new Error(`VITE_API_URL must be an http(s) URL or an absolute path, got "${apiUrl}"`);
  }
  return {
    // A trailing slash would produce `//v1/...` when joined with endpoint paths.
    apiUrl: apiUrl.replace(/\/+$/, ""),
    apiKey: typeof raw.VITE_API_KEY === "string" ? raw.VITE_API_KEY.trim() : "",
  };
}

export const env: AppEnv = parseEnv(import.meta.env);
