/**
 * The history of generations ("sessions"), each with its text, parameters, audio and metrics,
 * and which one is active. Persisted across reloads. A session's status is the one record of
 * whether something is being generated: `selectIsGenerating` reads it, nothing else keeps a flag.
 */
import { create } from "zustand";
import { createJSONStorage, persist } from "zustand/middleware";

import type { GenerationParams } from "@/config/parameters";
import { createStudioStorage } from "@/lib/persist-storage";

export const MAX_SESSIONS = 50;

export interface SessionMetrics {
  /** Milliseconds from sending the request (or the first text, live) to the first audio chunk. */
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

export interface SessionsState {
  sessions: Session[];
  activeSessionId: string | null;
}

export interface SessionsActions {
  /** Starts a new session (newest first) and makes it active; returns its id. */
  beginSession: (text: string, params: GenerationParams) => string;
  /** Replaces a session's text (live mode: the text grows while it is spoken). */
  setSessionText: (id: string, text: string) => void;
  appendAudio: (id: string, chunk: string) => void;
  completeSession: (id: string, metrics: SessionMetrics) => void;
  failSession: (id: string, status: "error" | "cancelled", message: string | null) => void;
  selectSession: (id: string | null) => void;
  deleteSession: (id: string) => void;
  clearSessions: () => void;
}

function newSessionId(): string {
  return typeof crypto !== "undefined" && "randomUUID" in crypto
    ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function updateSession(sessions: Session[], id: string, change: (session: Session) => Session): Session[] {
  return sessions.map((session) => (session.id === id ? change(session) : session));
}

export const useSessionsStore = create<SessionsState & SessionsActions>()(
  persist(
    (set) => ({
      sessions: [],
      activeSessionId: null,

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
        set((state) => ({ sessions: [session, ...state.sessions].slice(0, MAX_SESSIONS), activeSessionId: session.id }));
        return session.id;
      },
      setSessionText: (id, text) => set((state) => ({ sessions: updateSession(state.sessions, id, (s) => ({ ...s, text })) })),
      appendAudio: (id, chunk) =>
        set((state) => ({
          sessions: updateSession(state.sessions, id, (s) => ({ ...s, audioChunks: [...s.audioChunks, chunk] })),
        })),
      completeSession: (id, metrics) =>
        set((state) => ({ sessions: updateSession(state.sessions, id, (s) => ({ ...s, status: "done", metrics })) })),
      failSession: (id, status, message) =>
        set((state) => ({ sessions: updateSession(state.sessions, id, (s) => ({ ...s, status, error: message })) })),
      selectSession: (activeSessionId) => set({ activeSessionId }),
      deleteSession: (id) =>
        set((state) => ({
          sessions: state.sessions.filter((s) => s.id !== id),
          activeSessionId: state.activeSessionId === id ? null : state.activeSessionId,
        })),
      clearSessions: () => set({ sessions: [], activeSessionId: null }),
    }),
    {
      // The key the studio has always used, so existing histories carry over.
      name: "chatterbox-studio",
      version: 1,
      storage: createJSONStorage(() => createStudioStorage()),
      partialize: (state) => ({ sessions: state.sessions, activeSessionId: state.activeSessionId }),
      merge: (persisted, current) => {
        const saved = (persisted ?? {}) as Partial<SessionsState>;
        return {
          ...current,
          activeSessionId: saved.activeSessionId ?? null,
          // A generation cannot survive a reload: whatever was streaming then is now interrupted.
          sessions: (saved.sessions ?? []).map((s) =>
            s.status === "generating" ? { ...s, status: "cancelled", error: "Interrupted by a page reload" } : s,
          ),
        };
      },
    },
  ),
);

export const selectActiveSession = (state: SessionsState): Session | null =>
  state.sessions.find((s) => s.id === state.activeSessionId) ?? null;

/** Whether a generation is running: some session is still streaming. */
export const selectIsGenerating = (state: SessionsState): boolean => state.sessions.some((s) => s.status === "generating");
