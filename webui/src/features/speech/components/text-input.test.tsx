import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { TextInput } from "@/features/speech/components/text-input";
import { useSessionsStore } from "@/features/sessions/stores/sessions-store";
import { installFakeServer, speechStream } from "@/testing/fake-server";

describe("TextInput", () => {
  it("counts characters against the 4096 limit", () => {
    render(<TextInput />);
    fireEvent.change(screen.getByLabelText("Text to speak"), { target: { value: "Hello" } });
    expect(screen.getByTestId("char-count")).toHaveProperty("textContent", "5 / 4,096 characters");
    expect(screen.getByRole("button", { name: "Generate" })).toHaveProperty("disabled", false);
  });

  it("refuses 4097 characters with a visible message and a disabled button", () => {
    render(<TextInput />);
    fireEvent.change(screen.getByLabelText("Text to speak"), { target: { value: "a".repeat(4097) } });
    expect(screen.getByRole("alert").textContent).toBe("Text is 4,097 characters; the limit is 4,096.");
    expect(screen.getByRole("button", { name: "Generate" })).toHaveProperty("disabled", true);
    expect(screen.getByLabelText("Text to speak").getAttribute("aria-invalid")).toBe("true");
  });

  it("generates on Ctrl+Enter", async () => {
    const { fetchMock } = installFakeServer({ "POST /v1/audio/speech": () => speechStream([new Uint8Array(8)]) });
    render(<TextInput />);
    const box = screen.getByLabelText("Text to speak");
    fireEvent.change(box, { target: { value: "Shortcut" } });
    fireEvent.keyDown(box, { key: "Enter", ctrlKey: true });
    await waitFor(() => expect(useSessionsStore.getState().sessions[0]?.status).toBe("done"));
    expect(fetchMock).toHaveBeenCalledTimes(1);
  });
});
