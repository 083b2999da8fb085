// Splits a byte stream into consecutive JSON values the way Go's json.Decoder reads them: values
// follow each other with optional whitespace; no length prefix, no newline required.
import { StringDecoder } from "node:string_decoder";

export type ScanResult = { value: unknown } | { error: string } | null;

export class JsonStreamScanner {
  private readonly decoder = new StringDecoder("utf8");
  private buffer = "";
  /** Resumable scan state for the value that starts at offset 0 of `buffer`. */
  private pos = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private started = false;

  push(chunk: Buffer): void {
    this.buffer += this.decoder.write(chunk);
  }

  /** Characters waiting to be parsed (roughly the bytes a client has sent ahead of us). */
  get buffered(): number {
    return this.buffer.length;
  }

  /** The next complete value, a syntax error, or null if more input is needed (and `eof` is false). */
  next(eof: boolean): ScanResult {
    const buf = this.buffer;
    if (!this.started) {
      let i = 0;
      while (i < buf.length && /\s/.test(buf[i])) i++;
      this.buffer = buf.slice(i);
      if (this.buffer.length === 0) return null;
      this.started = true;
      this.pos = 0;
      this.depth = 0;
      const first = this.buffer[0];
      if (!/[{["\-0-9tfn]/.test(first)) {
        return { error: `invalid character '${first}' looking for beginning of value` };
      }
    }
    return this.scan(eof);
  }

  private scan(eof: boolean): ScanResult {
    const buf = this.buffer;
    const first = buf[0];
    if (first === "{" || first === "[" || first === '"') {
      for (let i = this.pos; i < buf.length; i++) {
        const c = buf[i];
        if (this.inString) {
          if (this.escaped) this.escaped = false;
          else if (c === "\\") this.escaped = true;
          else if (c === '"') {
            this.inString = false;
            if (this.depth === 0) return this.take(i + 1);
          }
        } else if (c === '"') {
          this.inString = true;
        } else if (c === "{" || c === "[") {
          this.depth++;
        } else if (c === "}" || c === "]") {
          this.depth--;
          if (this.depth === 0) return this.take(i + 1);
        }
      }
      this.pos = buf.length;
      return eof ? { error: "unexpected EOF" } : null;
    }
    // A bare literal or number ends at the first character that cannot continue it.
    let i = this.pos;
    while (i < buf.length && /[0-9A-Za-z.+-]/.test(buf[i])) i++;
    this.pos = i;
    if (i === buf.length && !eof) return null;
    return this.take(i);
  }

  private take(end: number): ScanResult {
    const text = this.buffer.slice(0, end);
    this.buffer = this.buffer.slice(end);
    this.started = false;
    this.inString = false;
    this.escaped = false;
    try {
      return { value: JSON.parse(text) };
    } catch (err) {
      return { error: (err as Error).message };
    }
  }
}
