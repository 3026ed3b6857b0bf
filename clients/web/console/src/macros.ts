/**
 * Macros: canned replies an admin keeps as data (`macros.json`, served beside
 * the page), each with its title and body in zh-CN and en and the action it
 * goes with. The body is written in the requester's language, whatever the
 * agent reads the console in; placeholders are filled in before sending.
 */

import type { Locale } from "./i18n";

export type MacroAction = "solve" | "request_info" | "reply";

export interface Macro {
  id: string;
  title: Record<Locale, string>;
  body: Record<Locale, string>;
  action: MacroAction;
}

export let macros: Macro[] = [];

function isMacro(m: unknown): m is Macro {
  if (typeof m !== "object" || !m) return false;
  const r = m as Record<string, unknown>;
  const texts = (v: unknown) =>
    typeof v === "object" &&
    v !== null &&
    typeof (v as Record<string, unknown>)["zh-CN"] === "string" &&
    typeof (v as Record<string, unknown>).en === "string";
  return (
    typeof r.id === "string" &&
    texts(r.title) &&
    texts(r.body) &&
    (r.action === "solve" || r.action === "request_info" || r.action === "reply")
  );
}

/**
 * Reads `macros.json`; a malformed entry is left out (and logged), not fatal,
 * and so is a file that cannot be read or is not JSON: the console works on
 * with no macros.
 */
export async function loadMacros(): Promise<void> {
  let data: unknown;
  try {
    const res = await fetch(new URL("./macros.json", location.href));
    if (!res.ok) {
      console.warn(`macros.json: HTTP ${res.status}; no macros`);
      return;
    }
    data = await res.json();
  } catch (err) {
    console.warn("macros.json could not be read; no macros", err);
    return;
  }
  const list = Array.isArray(data) ? data : [];
  macros = list.filter(isMacro);
  if (macros.length !== list.length) {
    console.warn(`macros.json: ${list.length - macros.length} malformed macro(s) left out`);
  }
}

/** `{{requester}}`, `{{ticket}}` and `{{agent}}` filled in; any other placeholder is left visible. */
export function fill(body: string, values: Record<string, string>): string {
  return body.replace(/\{\{\s*(\w+)\s*\}\}/g, (whole, key: string) => values[key] ?? whole);
}
