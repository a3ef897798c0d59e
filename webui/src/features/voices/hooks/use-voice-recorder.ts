import { useEffect, useRef, useState } from "react";

import { notifyError } from "@/stores/notifications-store";

export interface Recording {
  blob: Blob;
  filename: string;
}

/** Microphone capture with MediaRecorder; `stop()` resolves the take through `onRecorded`. */
export function useVoiceRecorder(onRecorded: (recording: Recording) => void) {
  const [recording, setRecording] = useState(false);
  const recorderRef = useRef<MediaRecorder | null>(null);
  const supported = typeof MediaRecorder !== "undefined" && !!navigator.mediaDevices?.getUserMedia;

  useEffect(() => () => recorderRef.current?.stream.getTracks().forEach((t) => t.stop()), []);

  async function start() {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const recorder = new MediaRecorder(stream);
      const parts: Blob[] = [];
      recorder.ondataavailable = (event) => parts.push(event.data);
      recorder.onstop = () => {
        stream.getTracks().forEach((t) => t.stop());
        const type = recorder.mimeType || "audio/webm";
        const extension = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
        onRecorded({ blob: new Blob(parts, { type }), filename: `recording.${extension}` });
        setRecording(false);
      };
      recorderRef.current = recorder;
      recorder.start();
      setRecording(true);
    } catch (error) {
      notifyError("Could not record from the microphone", error);
    }
  }

  function stop() {
    recorderRef.current?.stop();
    recorderRef.current = null;
  }

  return { supported, recording, start, stop };
}
