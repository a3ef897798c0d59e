import { useMutation, useQueryClient } from "@tanstack/react-query";

import { voicesQueryKey } from "@/features/voices/api/get-voices";
import { chatterboxAPI } from "@/lib/api";

export const useDeleteVoice = () => {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (id: string) => chatterboxAPI.deleteVoice(id),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: voicesQueryKey }),
  });
};
