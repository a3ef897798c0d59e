import { useId } from "react";

import { Button } from "@/components/ui/button";
import { Panel } from "@/components/ui/panel";
import { selectIsGenerating, useSessionsStore } from "@/features/sessions/stores/sessions-store";
import { inputProblem, useGenerationStore } from "@/features/speech/stores/generation-store";
import { useLiveStore } from "@/features/speech/stores/live-store";
import { MAX_INPUT_CHARS } from "@/lib/api";

/** The script box: character counter against the 4096 limit, Generate button and Ctrl/⌘+Enter. */
export function TextInput() {
  const id = useId();
  const text = useGenerationStore((s) => s.draftText);
  const setText = useGenerationStore((s) => s.setDraftText);
  const generate = useGenerationStore((s) => s.generate);
  const cancel = useGenerationStore((s) => s.cancel);
  const isGenerating = useSessionsStore(selectIsGenerating);
  const live = useLiveStore((s) => s.live);
  const finishing = useLiveStore((s) => s.finishing);
  const { start: goLive, sendDraft, finish: finishLive, stop: stopLive } = useLiveStore.getState();
  const problem = inputProblem(text);
  const tooLong = text.length > MAX_INPUT_CHARS;

  return (
    <Panel title="Text" titleId={`${id}-title`}>
      <label htmlFor={id} className="sr-only">
        Text to speak
      </label>
      <textarea
        id={id}
        value={text}
        onChange={(event) => {
          setText(event.target.value);
          if (live) sendDraft(event.target.value);
        }}
        onKeyDown={(event) => {
          if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
            event.preventDefault();
            if (live) finishLive();
            else void generate();
          }
        }}
        rows={6}
        placeholder="Type what Chatterbox should say…"
        aria-invalid={tooLong}
        aria-describedby={`${id}-count ${id}-problem`}
        className={`block w-full resize-y rounded-lg border p-3 text-base leading-relaxed shadow-inner focus:outline-2 focus:outline-offset-1 ${
          tooLong ? "border-red-400 focus:outline-red-500" : "border-slate-300 focus:outline-indigo-600"
        }`}
      />
      <div className="mt-2 flex flex-wrap items-center justify-between gap-3">
        <div className="text-xs">
          <span id={`${id}-count`} data-testid="char-count" className={tooLong ? "font-semibold text-red-700" : "text-slate-500"}>
            {text.length.toLocaleString("en-US")} / {MAX_INPUT_CHARS.toLocaleString("en-US")} characters
          </span>
          <p id={`${id}-problem`} role={tooLong ? "alert" : undefined} className="mt-0.5 text-red-700">
            {tooLong ? problem : ""}
          </p>
        </div>
        {live ? (
          <div className="flex items-center gap-2">
            <span role="status" data-testid="live-status" className="text-xs text-emerald-700">
              {finishing ? "Speaking the rest…" : "Live: each sentence is spoken as you finish it"}
            </span>
            <Button variant="secondary" onClick={stopLive}>
              Stop
            </Button>
            <Button variant="primary" onClick={finishLive} disabled={finishing}>
              Finish
            </Button>
          </div>
        ) : (
          <div className="flex items-center gap-2">
            <span className="hidden text-xs text-slate-400 sm:inline">Ctrl+Enter</span>
            {isGenerating ? (
              <Button variant="secondary" onClick={cancel}>
                Stop
              </Button>
            ) : null}
            <Button
              onClick={() => void goLive()}
              disabled={isGenerating || tooLong}
              title="Speak the text as you type it, sentence by sentence"
            >
              Go live
            </Button>
            <Button variant="primary" onClick={() => void generate()} disabled={problem !== null || isGenerating}>
              {isGenerating ? "Generating…" : "Generate"}
            </Button>
          </div>
        )}
      </div>
    </Panel>
  );
}
