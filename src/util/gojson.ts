// JSON exactly as Go's encoding/json writes it for the admin socket: two-space indentation via
// Encoder.SetIndent, `<`, `>`, `&`, U+2028 and U+2029 escaped inside strings, and raw JSON
// (a remote node's nodeinfo) embedded with its own key order.

/** Already-valid JSON text that is embedded verbatim (like Go's json.RawMessage). */
export class RawJson {
  constructor(readonly text: string) {}

  /** Validates `text` as JSON; throws SyntaxError if it is not. */
  static parse(text: string): RawJson {
    JSON.parse(text);
    return new RawJson(text);
  }
}

function compact(value: unknown, out: string[]): void {
  if (value === null || value === undefined) {
    out.push("null");
  } else if (value instanceof RawJson) {
    out.push(value.text);
  } else if (typeof value === "string") {
    out.push(JSON.stringify(value));
  } else if (typeof value === "number") {
    out.push(Number.isFinite(value) ? JSON.stringify(value) : "null");
  } else if (typeof value === "bigint") {
    out.push(value.toString());
  } else if (typeof value === "boolean") {
    out.push(value ? "true" : "false");
  } else if (Array.isArray(value)) {
    out.push("[");
    value.forEach((item, i) => {
      if (i > 0) out.push(",");
      compact(item, out);
    });
    out.push("]");
  } else if (typeof value === "object") {
    out.push("{");
    let first = true;
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue;
      if (!first) out.push(",");
      first = false;
      out.push(JSON.stringify(key), ":");
      compact(item, out);
    }
    out.push("}");
  } else {
    out.push("null");
  }
}

const HTML_ESCAPES: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

function isSpace(c: string): boolean {
  return c === " " || c === "\n" || c === "\r" || c === "\t";
}

/**
 * Re-indents valid JSON text the way Go's json.Indent does (or compacts it when `indent` is null),
 * escaping HTML characters in strings.
 */
export function goIndent(text: string, indent: string | null = "  "): string {
  const out: string[] = [];
  let depth = 0;
  let i = 0;
  const newline = () => {
    if (indent !== null) out.push(`\n${indent.repeat(depth)}`);
  };
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      let s = '"';
      while (j < text.length && text[j] !== '"') {
        const d = text[j];
        if (d === "\\") {
          s += d + text[j + 1];
          j += 2;
          continue;
        }
        s += HTML_ESCAPES[d] ?? d;
        j++;
      }
      out.push(`${s}"`);
      i = j + 1;
      continue;
    }
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === "{" || c === "[") {
      let j = i + 1;
      while (j < text.length && isSpace(text[j])) j++;
      const close = c === "{" ? "}" : "]";
      if (text[j] === close) {
        out.push(c + close);
        i = j + 1;
        continue;
      }
      out.push(c);
      depth++;
      newline();
    } else if (c === "}" || c === "]") {
      depth--;
      newline();
      out.push(c);
    } else if (c === ",") {
      out.push(",");
      newline();
    } else if (c === ":") {
      out.push(indent === null ? ":" : ": ");
    } else {
      out.push(c);
    }
    i++;
  }
  return out.join("");
}

/** Compact JSON with Go's HTML escaping (what json.Marshal produces), RawJson embedded as is. */
export function goMarshal(value: unknown): string {
  const out: string[] = [];
  compact(value, out);
  return goIndent(out.join(""), null);
}

/** One admin socket message: indented like Go's Encoder with SetIndent("", "  "), newline-terminated. */
export function goEncodeIndented(value: unknown): string {
  const out: string[] = [];
  compact(value, out);
  return `${goIndent(out.join(""))}\n`;
}
