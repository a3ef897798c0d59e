/**
 * The studio's client state: generation parameters, the draft text, the generating flag and the
 * history of generations ("sessions", each with its text, parameters, audio and metrics).
 * Parameters and sessions survive reloads; server data (voices, models) lives in the query layer.
 */
import { create } from "zustand";
import { createJSONStorage, persist } from "zustand/middleware";

import { DEFAULT_PARAMS, type GenerationParams } from "@/lib/parameters";
import { createStudioStorage } from "@/lib/persist-storage";

export const MAX_SESSIONS = 50;

export interface SessionMetrics {
  /** Milliseconds from sending the request to the first audio chunk. */
  timeToFirstAudioMs: number | null;
  /** Milliseconds from sending the request to the end of the stream. */
  totalMs: number;
  durationSeconds: number;
  /** Generation time divided by audio duration; below 1 is faster than real time. */
  realTimeFactor: number | null;
}

export type SessionStatus = "generating" | "done" | "error" | "cancelled";

export interface Session {
  id: string;
  createdAt: number;
  text: string;
  params: GenerationParams;
  status: SessionStatus;
  error: string | null;
  /** Base64 PCM16 24 kHz chunks exactly as streamed. */
  audioChunks: string[];
  metrics: SessionMetrics | null;
}

export interface StudioState {
  params: GenerationParams;
  draftText: string;
  apiKey: string;
  isGenerating: boolean;
  sessions: Session[];
  activeSessionId: string | null;
}

export interface StudioActions {
  setParam: <K extends keyof GenerationParams>(key: K, value: GenerationParams[K]) => void;
  resetParam: (key: keyof GenerationParams) => void;
  resetParams: () => void;
  setDraftText: (text: string) => void;
  setApiKey: (key: string) => void;
  /** Starts a new session (newest first) and makes it active; returns its id. */
  beginSession: (text: string, params: GenerationParams) => string;
  appendAudio: (id: string, chunk: string) => void;
  completeSession: (id: string, metrics: SessionMetrics) => void;
  failSession: (id: string, status: "error" | "cancelled", message: string | null) => void;
  selectSession: (id: string | null) => void;
  deleteSession: (id: string) => void;
  clearSessions: () => void;
}

export type StudioStore = StudioState & StudioActions;

export const initialStudioState: StudioState = {
  params: DEFAULT_PARAMS,
  draftText: "",
  apiKey: "",
  isGenerating: false,
  sessions: [],
  activeSessionId: null,
};

function newSessionId(): string {
  return typeof crypto !== "undefined" && "randomUUID" in crypto
    ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function updateSession(sessions: Session[], id: string, change: (session: Session) => Session): Session[] {
  return sessions.map((session) => (session.id === id ? change(session) : session));
}

export const useStudioStore = create<StudioStore>()(
  persist(
    (set) => ({
      ...initialStudioState,

      setParam: (key, value) => set((state) => ({ params: { ...state.params, [key]: value } })),
      resetParam: (key) => set((state) => ({ params: { ...state.params, [key]: DEFAULT_PARAMS[key] } })),
      resetParams: () =>
        // Voice and model are choices, not tuning: "reset all" keeps them.
        set((state) => ({ params: {
          ...DEFAULT_PARAMS,
          voice: state.params.voice,
          model: state.params.model,
          language: state.params.language,
        } })),
      setDraftText: (draftText) => set({ draftText }),
      setApiKey: (apiKey) => set({ apiKey }),

      beginSession: (text, params) => {
        const session: Session = {
          id: newSessionId(),
          createdAt: Date.now(),
          text,
          params,
          status: "generating",
          error: null,
          audioChunks: [],
          metrics: null,
        };
        set((state) => ({
          sessions: [session, ...state.sessions].slice(0, MAX_SESSIONS),
          activeSessionId: session.id,
          isGenerating: true,
        }));
        return session.id;
      },
      appendAudio: (id, chunk) =>
        set((state) => ({
          sessions: updateSession(state.sessions, id, (s) => ({ ...s, audioChunks: [...s.audioChunks, chunk] })),
        })),
      completeSession: (id, metrics) =>
        set((state) => ({
          sessions: updateSession(state.sessions, id, (s) => ({ ...s, status: "done", metrics })),
          isGenerating: false,
        })),
      failSession: (id, status, message) =>
        set((state) => ({
          sessions: updateSession(state.sessions, id, (s) => ({ ...s, status, error: message })),
          isGenerating: false,
        })),
      selectSession: (activeSessionId) => set({ activeSessionId }),
      deleteSession: (id) =>
        set((state) => ({
          sessions: state.sessions.filter((s) => s.id !== id),
          activeSessionId: state.activeSessionId === id ? null : state.activeSessionId,
        })),
      clearSessions: () => set({ sessions: [], activeSessionId: null }),
    }),
    {
      name: "chatterbox-studio",
      version: 1,
      storage: createJSONStorage(() => createStudioStorage()),
      partialize: (state) => ({
        params: state.params,
        draftText: state.draftText,
        apiKey: state.apiKey,
        sessions: state.sessions,
        activeSessionId: state.activeSessionId,
      }),
      merge: (persisted, current) => {
        const saved = (persisted ?? {}) as Partial<StudioState>;
        return {
          ...current,
          ...saved,
          // Parameters added in later versions get their defaults.
          params: { ...DEFAULT_PARAMS, ...saved.params },
          // A generation cannot survive a reload: whatever was streaming then is now interrupted.
          sessions: (saved.sessions ?? []).map((s) =>
            s.status === "generating" ? { ...s, status: "cancelled", error: "Interrupted by a page reload" } : s,
          ),
          isGenerating: false,
        };
      },
    },
  ),
);

export const selectActiveSession = (state: StudioState): Session | null =>
  state.sessions.find((s) => s.id === state.activeSessionId) ?? null;

/** The audio to show in the player: the active session's chunks, or none. */
export const selectCurrentAudio = (state: StudioState): string[] | null =>
  selectActiveSession(state)?.audioChunks ?? null;
