import { useEffect } from "react";

import { useNotifications, type Toast } from "@/stores/notifications-store";

// Errors stay long enough to read a server message; confirmations get out of the way quickly.
const AUTO_DISMISS_MS: Record<Toast["kind"], number> = { error: 12_000, info: 4_000 };

function ToastCard({ toast }: { toast: Toast }) {
  const dismiss = useNotifications((s) => s.dismiss);
  useEffect(() => {
    const timer = setTimeout(() => dismiss(toast.id), AUTO_DISMISS_MS[toast.kind]);
    return () => clearTimeout(timer);
  }, [dismiss, toast.id, toast.kind]);
  const tone = toast.kind === "error" ? "border-red-300 bg-red-50 text-red-900" : "border-slate-300 bg-white text-slate-900";
  return (
    <div role={toast.kind === "error" ? "alert" : "status"} className={`pointer-events-auto flex gap-3 rounded-lg border p-3 shadow-lg ${tone}`}>
      <div className="min-w-0 flex-1">
        <p className="text-sm font-semibold">{toast.title}</p>
        <p className="mt-0.5 text-sm break-words" data-testid="toast-message">
          {toast.message}
        </p>
      </div>
      <button
        type="button"
        onClick={() => dismiss(toast.id)}
        aria-label="Dismiss notification"
        className="h-6 w-6 shrink-0 rounded text-lg leading-none opacity-70 hover:opacity-100 focus-visible:outline-2 focus-visible:outline-indigo-600"
      >
        ×
      </button>
    </div>
  );
}

/** Stacked toasts in the corner; errors are announced to screen readers as alerts. */
export function ToastViewport() {
  const toasts = useNotifications((s) => s.toasts);
  return (
    <div className="pointer-events-none fixed inset-x-3 bottom-3 z-50 flex flex-col gap-2 sm:inset-x-auto sm:right-4 sm:bottom-4 sm:w-96">
      {toasts.map((toast) => (
        <ToastCard key={toast.id} toast={toast} />
      ))}
    </div>
  );
}
