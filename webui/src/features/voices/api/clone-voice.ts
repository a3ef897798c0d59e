import { useMutation, useQueryClient } from "@tanstack/react-query";

import { voicesQueryKey } from "@/features/voices/api/get-voices";
import { chatterboxAPI } from "@/lib/api";

export interface CloneVoiceInput {
  name: string;
  sample: Blob;
  filename: string;
}

export const useCloneVoice = () => {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: ({ name, sample, filename }: CloneVoiceInput) => chatterboxAPI.cloneVoice(name, sample, { filename }),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: voicesQueryKey }),
  });
};
