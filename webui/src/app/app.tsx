import { ToastViewport } from "@/components/ui/toast-viewport";
import { ConnectionSettings } from "@/app/connection-settings";
import { ConvertPanel } from "@/features/convert/components/convert-panel";
import { LanguagePicker } from "@/features/models/components/language-picker";
import { ModelPicker } from "@/features/models/components/model-picker";
import { useModelKnobs } from "@/features/models/hooks/use-model-knobs";
import { TagPicker } from "@/features/models/components/tag-picker";
import { SessionsSidebar } from "@/features/sessions/components/sessions-sidebar";
import { StreamingAudioPlayer } from "@/features/speech/components/streaming-audio-player";
import { TextInput } from "@/features/speech/components/text-input";
import { TTSParameters } from "@/features/speech/components/tts-parameters";
import { useGenerationStore } from "@/features/speech/stores/generation-store";
import { VoiceLibrary } from "@/features/voices/components/voice-library";
import { VoicePicker } from "@/features/voices/components/voice-picker";

/** A tag picked in the settings goes to the end of the text being written. */
function appendTag(tag: string) {
  const { draftText, setDraftText } = useGenerationStore.getState();
  const spacer = draftText === "" || /\s$/.test(draftText) ? "" : " ";
  setDraftText(`${draftText}${spacer}${tag} `);
}

export function App() {
  const modelKnobs = useModelKnobs();
  return (
    <div className="min-h-screen">
      <header className="bg-slate-900 text-white">
        <div className="mx-auto flex max-w-7xl items-center justify-between gap-3 px-4 py-3">
          <h1 className="text-lg font-semibold tracking-tight">
            Chatterbox <span className="font-normal text-indigo-300">Studio</span>
          </h1>
          <ConnectionSettings />
        </div>
      </header>
      {/* Phones get one column in reading order: write, listen, voices, tune, then history. */}
      <div className="mx-auto grid max-w-7xl items-start gap-4 p-3 sm:p-4 lg:grid-cols-[15rem_minmax(0,1fr)_21rem]">
        <main className="space-y-4 lg:col-start-2 lg:row-start-1">
          <TextInput />
          <StreamingAudioPlayer />
          <VoiceLibrary />
          <ConvertPanel />
        </main>
        <aside className="space-y-4 lg:col-start-3 lg:row-start-1" aria-label="Settings">
          <TTSParameters
            model={modelKnobs}
            pickers={
              <>
                <VoicePicker />
                <ModelPicker />
                <LanguagePicker />
                <TagPicker onInsert={appendTag} />
              </>
            }
          />
        </aside>
        <nav className="lg:col-start-1 lg:row-start-1" aria-label="Sessions">
          <SessionsSidebar />
        </nav>
      </div>
      <ToastViewport />
    </div>
  );
}
