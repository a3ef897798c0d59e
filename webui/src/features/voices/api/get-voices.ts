import { queryOptions, useQuery } from "@tanstack/react-query";

import { chatterboxAPI } from "@/lib/api";

export const voicesQueryKey = ["voices"] as const;

export const voicesQueryOptions = () =>
  queryOptions({ queryKey: voicesQueryKey, queryFn: ({ signal }) => chatterboxAPI.getSavedVoices({ signal }) });

export const useVoices = () => useQuery(voicesQueryOptions());
