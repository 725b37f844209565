// A small YAML emitter for showing a run's spec (JSON data: objects, arrays, strings, numbers,
// booleans, null). Strings are quoted whenever YAML could read them as something else.

const PLAIN = /^[A-Za-z0-9_./@-][A-Za-z0-9_./@:+ -]*$/;
const SPECIAL = /^(true|false|yes|no|on|off|null|~|-?\d[\d_.eE+-]*|\.inf|\.nan)$/i;

function scalar(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  const s = String(value);
  if (PLAIN.test(s) && !SPECIAL.test(s) && !s.endsWith(" ") && !s.includes(": ")) return s;
  return JSON.stringify(s); // a JSON string is a valid double-quoted YAML scalar
}

function isEmpty(value) {
  return typeof value === "object" && value !== null && Object.keys(value).length === 0;
}

function lines(value, indent) {
  const pad = " ".repeat(indent);
  if (Array.isArray(value)) {
    return value.flatMap((item) => block(`${pad}-`, item, indent + 2));
  }
  return Object.keys(value).flatMap((key) => block(`${pad}${scalar(key)}:`, value[key], indent + 2));
}

function block(prefix, value, indent) {
  if (typeof value !== "object" || value === null) return [`${prefix} ${scalar(value)}`];
  if (isEmpty(value)) return [`${prefix} ${Array.isArray(value) ? "[]" : "{}"}`];
  return [prefix, ...lines(value, indent)];
}

/** The YAML text of a JSON value (an object at the top level). */
export function toYaml(value) {
  if (typeof value !== "object" || value === null) return scalar(value) + "\n";
  if (isEmpty(value)) return (Array.isArray(value) ? "[]" : "{}") + "\n";
  return lines(value, 0).join("\n") + "\n";
}

/** Flatten JSON into {"/compute/nodes": 2, ...} (JSON-pointer paths) for a spec diff. */
export function flatten(value, path = "", out = {}) {
  if (typeof value !== "object" || value === null || isEmpty(value)) {
    out[path || "/"] = value;
    return out;
  }
  for (const key of Object.keys(value)) flatten(value[key], `${path}/${key}`, out);
  return out;
}
