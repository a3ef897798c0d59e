/**
 * A minimal reader for `text/event-stream` bodies, following the WHATWG framing rules that matter
 * for the speech stream: events end at a blank line, `data:` lines of one event are joined with
 * "\n", lines starting with ":" are comments, and CR, LF or CRLF all end a line. Network chunks
 * may split a line (or a multi-byte character) anywhere, so bytes are buffered until a line ends.
 */
export interface ServerSentEvent {
  event: string;
  data: string;
}

export async function* readServerSentEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = new EventParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
      yield* parser.push(text, done);
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

class EventParser {
  private pending = "";
  private dataLines: string[] = [];
  private eventName = "";

  *push(text: string, final: boolean): Generator<ServerSentEvent> {
    this.pending += text;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.pending);
      // A lone trailing "\r" might be the first half of "\r\n": wait for the next chunk.
      if (!match || (match[0] === "\r" && match.index === this.pending.length - 1 && !final)) break;
      const line = this.pending.slice(0, match.index);
      this.pending = this.pending.slice(match.index + match[0].length);
      const event = this.acceptLine(line);
      if (event) yield event;
    }
    if (final) {
      // A stream that ends without the closing blank line still delivers its last event.
      if (this.pending !== "") this.acceptLine(this.pending);
      this.pending = "";
      const event = this.acceptLine("");
      if (event) yield event;
    }
  }

  private acceptLine(line: string): ServerSentEvent | null {
    if (line === "") {
      if (this.dataLines.length === 0) {
        this.eventName = "";
        return null;
      }
      const event = { event: this.eventName || "message", data: this.dataLines.join("\n") };
      this.dataLines = [];
      this.eventName = "";
      return event;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.dataLines.push(value);
    else if (field === "event") this.eventName = value;
    return null;
  }
}
