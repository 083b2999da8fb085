// How a config error names the value it refused: short JSON for scalars, "a list" or "an object"
// for containers, so one line stays readable whatever the operator wrote.
export function showValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 70 ? `${text.slice(0, 67)}…` : text;
}
