import { cleanup } from "@testing-library/react";
import { afterEach, beforeEach, vi } from "vitest";

import { initialStudioState, useStudioStore } from "@/lib/store";
import { useNotifications } from "@/lib/notifications";

// Every test starts from fresh stores and empty storage (the bulletproof-react reset pattern).
beforeEach(() => {
  localStorage.clear();
  useStudioStore.setState(initialStudioState);
  useNotifications.setState({ toasts: [] });
});

afterEach(() => {
  cleanup();
});

afterEach(() => {
  vi.unstubAllGlobals();
});
