/** Shared look of the native <select> controls. */
export const selectClass =
  "w-full rounded-lg border border-slate-300 bg-white px-2.5 py-2 text-sm focus:outline-2 focus:outline-indigo-600";
