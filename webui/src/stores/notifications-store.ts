/** Toast messages. Kept apart from the studio store: they are transient and never persisted. */
import { create } from "zustand";

export interface Toast {
  id: number;
  kind: "error" | "info";
  title: string;
  message: string;
}

interface NotificationsState {
  toasts: Toast[];
  notify: (toast: Omit<Toast, "id">) => number;
  dismiss: (id: number) => void;
}

let nextToastId = 1;

export const useNotifications = create<NotificationsState>()((set) => ({
  toasts: [],
  notify: (toast) => {
    const id = nextToastId++;
    // Keep the last few only, so a flapping server cannot bury the page in toasts.
    set((state) => ({ toasts: [...state.toasts, { ...toast, id }].slice(-4) }));
    return id;
  },
  dismiss: (id) => set((state) => ({ toasts: state.toasts.filter((t) => t.id !== id) })),
}));

export function notifyError(title: string, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  useNotifications.getState().notify({ kind: "error", title, message });
}
