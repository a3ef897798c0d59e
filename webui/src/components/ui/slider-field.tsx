import { useId } from "react";

interface SliderFieldProps {
  label: string;
  hint: string;
  value: number;
  defaultValue: number;
  /** Whether the value is the user's own (the reset button shows); default: it differs from `defaultValue`. */
  changed?: boolean;
  /** Shown greyed out, with the hint saying why. */
  disabled?: boolean;
  min: number;
  max: number;
  step: number;
  onChange: (value: number) => void;
  onReset: () => void;
}

/** A labelled range input with its current value and a reset-to-default button. */
export function SliderField({
  label,
  hint,
  value,
  defaultValue,
  changed = value !== defaultValue,
  disabled = false,
  min,
  max,
  step,
  onChange,
  onReset,
}: SliderFieldProps) {
  const id = useId();
  const decimals = step < 0.05 ? 2 : step < 1 ? 2 : 0;
  return (
    <div className="space-y-1">
      <div className="flex items-center justify-between gap-2 text-sm">
        <label htmlFor={id} className="font-medium text-slate-800">
          {label}
        </label>
        <div className="flex items-center gap-1">
          <output htmlFor={id} className="min-w-10 text-right font-mono text-xs text-slate-600 tabular-nums">
            {value.toFixed(decimals)}
          </output>
          <button
            type="button"
            onClick={onReset}
            disabled={!changed || disabled}
            aria-label={`Reset ${label} to ${defaultValue}`}
            title={`Reset to ${defaultValue}`}
            className="rounded px-1 text-xs text-slate-500 hover:bg-slate-100 hover:text-slate-900 focus-visible:outline-2 focus-visible:outline-indigo-600 disabled:invisible"
          >
            ↺
          </button>
        </div>
      </div>
      <input
        id={id}
        type="range"
        min={min}
        max={max}
        step={step}
        value={value}
        disabled={disabled}
        onChange={(event) => onChange(Number(event.target.value))}
        aria-describedby={`${id}-hint`}
        className="w-full disabled:opacity-40"
      />
      <p id={`${id}-hint`} className="text-xs text-slate-500">
        {hint}
      </p>
    </div>
  );
}
