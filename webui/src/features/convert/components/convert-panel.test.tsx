import { fireEvent, screen, waitFor } from "@testing-library/react";
import { beforeEach, describe, expect, it, vi } from "vitest";

import { ConvertPanel } from "@/features/convert/components/convert-panel";
import { useNotifications } from "@/stores/notifications-store";
import { installFakeServer, openAIError } from "@/testing/fake-server";
import { renderWithQueries } from "@/testing/render";

const VOICES = [
  { id: "default", name: "default", builtin: true },
  { id: "voice_1", name: "Narrator" },
];

function serve(conversion: (request: Request) => Response | Promise<Response>) {
  return installFakeServer({
    "GET /v1/audio/voices": () => Response.json({ voices: VOICES }),
    "POST /v1/audio/voice-conversion": conversion,
  });
}

function chooseFile(bytes = 64) {
  const file = new File([new Uint8Array(bytes)], "me.mp3", { type: "audio/mpeg" });
  fireEvent.change(screen.getByLabelText(/Speech to convert/), { target: { files: [file] } });
}

describe("ConvertPanel", () => {
  beforeEach(() => {
    vi.stubGlobal("URL", Object.assign(URL, { createObjectURL: vi.fn(() => "blob:converted"), revokeObjectURL: vi.fn() }));
  });

  it("uploads the clip with the chosen voice and offers the result to play and download", async () => {
    const { requests } = serve(() => new Response(new Uint8Array([1, 0, 2, 0]), { headers: { "Content-Type": "audio/pcm" } }));
    renderWithQueries(<ConvertPanel />);
    await screen.findByRole("option", { name: "Narrator" });
    expect(screen.getByRole("button", { name: "Convert" }).hasAttribute("disabled")).toBe(true);

    chooseFile();
    fireEvent.change(screen.getByLabelText("Target voice"), { target: { value: "voice_1" } });
    fireEvent.click(screen.getByRole("button", { name: "Convert" }));

    const download = await screen.findByRole("link", { name: /Download me-as-Narrator\.wav/ });
    expect(download.getAttribute("href")).toBe("blob:converted");
    expect(screen.getByTestId("converted-audio").getAttribute("src")).toBe("blob:converted");
    const form = await requests.find((r) => r.method === "POST")!.formData();
    expect(form.get("voice")).toBe("voice_1");
    expect(form.get("response_format")).toBe("pcm"); // WAV is wrapped here, with its real length
    expect((form.get("file") as Blob).size).toBe(64);
    // The 4 PCM bytes came back as a 44-byte-header WAV file.
    const blob = vi.mocked(URL.createObjectURL).mock.calls[0][0] as Blob;
    expect(blob.type).toBe("audio/wav");
    expect(blob.size).toBe(48);
  });

  it("asks the server for compressed formats directly", async () => {
    const { requests } = serve(() => new Response(new Uint8Array([0xff, 0xfb]), { headers: { "Content-Type": "audio/mpeg" } }));
    renderWithQueries(<ConvertPanel />);
    chooseFile();
    fireEvent.change(screen.getByLabelText("File type"), { target: { value: "mp3" } });
    fireEvent.click(screen.getByRole("button", { name: "Convert" }));
    await screen.findByRole("link", { name: /Download me-as-default\.mp3/ });
    expect((await requests.find((r) => r.method === "POST")!.formData()).get("response_format")).toBe("mp3");
  });

  it("shows the server's reason when the clip cannot be converted", async () => {
    serve(() => openAIError(400, "source audio is silent", "file"));
    renderWithQueries(<ConvertPanel />);
    chooseFile();
    fireEvent.click(screen.getByRole("button", { name: "Convert" }));
    await waitFor(() =>
      expect(useNotifications.getState().toasts[0]).toMatchObject({ title: "Conversion failed", message: "source audio is silent" }),
    );
    expect(screen.queryByRole("link", { name: /Download/ })).toBeNull();
  });

  it("refuses files over 10 MB before uploading", async () => {
    const { requests } = serve(() => new Response(""));
    renderWithQueries(<ConvertPanel />);
    chooseFile(10 * 1024 * 1024 + 1);
    expect(screen.getByText("That file is larger than 10 MB.")).toBeTruthy();
    expect(screen.getByRole("button", { name: "Convert" }).hasAttribute("disabled")).toBe(true);
    expect(requests.filter((r) => r.method === "POST")).toEqual([]);
  });
});
