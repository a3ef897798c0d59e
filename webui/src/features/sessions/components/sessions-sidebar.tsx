import { useId } from "react";

import { Button } from "@/components/ui/button";
import { Panel } from "@/components/ui/panel";
import { selectIsGenerating, useSessionsStore, type Session } from "@/features/sessions/stores/sessions-store";

const STATUS_STYLES: Record<Session["status"], string> = {
  generating: "bg-amber-100 text-amber-800",
  done: "bg-emerald-100 text-emerald-800",
  error: "bg-red-100 text-red-800",
  cancelled: "bg-slate-100 text-slate-600",
};

function SessionItem({ session, active }: { session: Session; active: boolean }) {
  const selectSession = useSessionsStore((s) => s.selectSession);
  const deleteSession = useSessionsStore((s) => s.deleteSession);
  const time = new Date(session.createdAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return (
    <li className={`group flex items-start gap-1 rounded-lg ${active ? "bg-indigo-50 ring-1 ring-indigo-200" : "hover:bg-slate-50"}`}>
      <button
        type="button"
        onClick={() => selectSession(session.id)}
        aria-current={active ? "true" : undefined}
        className="min-w-0 flex-1 rounded-lg px-2 py-2 text-left focus-visible:outline-2 focus-visible:outline-indigo-600"
      >
        <p className="line-clamp-2 text-sm text-slate-900">{session.text}</p>
        <p className="mt-1 flex items-center gap-2 text-[11px] text-slate-500">
          <span>{time}</span>
          <span className={`rounded px-1.5 py-0.5 ${STATUS_STYLES[session.status]}`}>{session.status}</span>
          {session.metrics ? <span>{session.metrics.durationSeconds.toFixed(1)} s</span> : null}
        </p>
      </button>
      <button
        type="button"
        onClick={() => deleteSession(session.id)}
        aria-label={`Delete session "${session.text.slice(0, 30)}"`}
        disabled={session.status === "generating"}
        className="m-1 rounded px-1.5 text-slate-400 hover:bg-slate-200 hover:text-slate-800 focus-visible:outline-2 focus-visible:outline-indigo-600 disabled:invisible"
      >
        ×
      </button>
    </li>
  );
}

/** History of generations, newest first; picking one loads it into the player. */
export function SessionsSidebar() {
  const id = useId();
  const sessions = useSessionsStore((s) => s.sessions);
  const activeId = useSessionsStore((s) => s.activeSessionId);
  const clearSessions = useSessionsStore((s) => s.clearSessions);
  const isGenerating = useSessionsStore(selectIsGenerating);
  return (
    <Panel
      title="Sessions"
      titleId={`${id}-title`}
      actions={
        sessions.length > 0 ? (
          <Button size="sm" variant="ghost" onClick={clearSessions} disabled={isGenerating}>
            Clear
          </Button>
        ) : null
      }
    >
      {sessions.length === 0 ? (
        <p className="text-sm text-slate-500">Your generations will be listed here.</p>
      ) : (
        <ul className="max-h-[60vh] space-y-1 overflow-y-auto" aria-label="Past generations">
          {sessions.map((session) => (
            <SessionItem key={session.id} session={session} active={session.id === activeId} />
          ))}
        </ul>
      )}
    </Panel>
  );
}
