import type { ReactNode } from "react";

interface PanelProps {
  title: string;
  /** id for the heading, so the section can be labelled by it. */
  titleId: string;
  actions?: ReactNode;
  children: ReactNode;
  className?: string;
}

export function Panel({ title, titleId, actions, children, className = "" }: PanelProps) {
  return (
    <section aria-labelledby={titleId} className={`rounded-xl border border-slate-200 bg-white p-4 shadow-sm ${className}`}>
      <div className="mb-3 flex items-center justify-between gap-2">
        <h2 id={titleId} className="text-sm font-semibold tracking-wide text-slate-700 uppercase">
          {title}
        </h2>
        {actions}
      </div>
      {children}
    </section>
  );
}
