import { queryOptions, useQuery } from "@tanstack/react-query";

import { chatterboxAPI } from "@/lib/api";

export const modelsQueryOptions = () =>
  queryOptions({ queryKey: ["models"], queryFn: ({ signal }) => chatterboxAPI.getModels({ signal }) });

export const useModels = () => useQuery(modelsQueryOptions());
