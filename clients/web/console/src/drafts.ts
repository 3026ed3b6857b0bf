/**
 * What the agent typed on a case's page, carried over when the page is drawn
 * again from the server (a "Reload" after someone else's change, a change of
 * language, a return to a case left with something unsent). A control is
 * known by a key that stays the same from one drawing to the next:
 * `data-draft`, which `field()` sets to the server's field name, or for a box
 * of a checkbox group the group's field and the box's value. Only controls
 * the agent changed from what the page showed are carried over, so what the
 * server now says fills everything else.
 */

import { type RetryKeyStore } from "@casemesh/client";

import { fromSession } from "./ui";

type Control = HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;
type Value = string | boolean;

/** What each control showed when its page was drawn. */
const drawn = new WeakMap<Control, Value>();
/**
 * What each control held when it was sent (`forgetSent`). A form left as it
 * was sent until its page is drawn again (a decision) holds words that are
 * the case's now, not a draft, even if that drawing fails; what the agent
 * types into it since is theirs again.
 */
const sentAs = new WeakMap<Control, Value>();

function controls(root: HTMLElement): Control[] {
  return [...root.querySelectorAll<Control>("input, textarea, select")];
}

function keyOf(control: Control): string | undefined {
  if (control.dataset.draft) return control.dataset.draft;
  const group = control.closest<HTMLElement>("fieldset.checks");
  if (control instanceof HTMLInputElement && control.type === "checkbox" && group?.dataset.field) {
    return `${group.dataset.field}=${control.value}`;
  }
  return undefined;
}

function valueOf(control: Control): Value {
  return control instanceof HTMLInputElement && control.type === "checkbox"
    ? control.checked
    : control.value;
}

/** Notes what the page just drawn shows, so that what the agent changes can be told apart. */
export function drawnAs(root: HTMLElement): void {
  for (const control of controls(root)) drawn.set(control, valueOf(control));
}

/** The values the agent changed since the page was drawn, and did not send, by key. */
export function typed(root: HTMLElement): Map<string, Value> {
  const changed = new Map<string, Value>();
  for (const control of controls(root)) {
    const key = keyOf(control);
    const value = valueOf(control);
    if (key && drawn.get(control) !== value && sentAs.get(control) !== value) {
      changed.set(key, value);
    }
  }
  return changed;
}

/**
 * Puts kept values into the page drawn anew, each into the control with the
 * same key, and tells the controls (a form shaped by a choice reshapes itself).
 * Returns whether every kept value found its control.
 */
export function restore(root: HTMLElement, kept: Map<string, Value>): boolean {
  const placed = new Set<string>();
  for (const control of controls(root)) {
    const key = keyOf(control);
    const value = key === undefined ? undefined : kept.get(key);
    if (key === undefined || value === undefined) continue;
    if (typeof value === "boolean") {
      if (!(control instanceof HTMLInputElement)) continue;
      control.checked = value;
    } else {
      control.value = value;
      if (control.value !== value) continue; // a choice the new page no longer offers
    }
    control.dispatchEvent(new Event("change", { bubbles: true }));
    placed.add(key);
  }
  return placed.size === kept.size;
}

/**
 * What the agent typed on each case they left without sending it (another
 * case opened by a link, the next case taken, back to the queue), by case
 * name, given back when that case is drawn again. In this page's memory only,
 * forgotten on signing out; kept while the sign-in runs out, for the agent
 * alone (`leftFor`).
 */
const left = new Map<string, Map<string, Value>>();

/** Keeps what was typed on case `name`'s page (drawn in `root`), if anything. */
export function keepLeft(name: string, root: HTMLElement): void {
  const changed = typed(root);
  if (changed.size) left.set(name, changed);
}

/** What was kept for case `name` (once: it is the page's again once drawn). */
export function takeLeft(name: string): Map<string, Value> {
  const kept = left.get(name) ?? new Map<string, Value>();
  left.delete(name);
  return kept;
}

/**
 * What the agent typed in `sent` (a field, or the fields of a form) was sent:
 * it is case `name`'s now, never given back as a draft (it was kept if the
 * agent left the case while it was on its way), nor saved as one again while
 * `sent` still holds it.
 */
export function forgetSent(name: string, sent: HTMLElement): void {
  const inside = sent.matches("input, textarea, select") ? [sent as Control] : controls(sent);
  for (const control of inside) sentAs.set(control, valueOf(control));
  const keys = new Set(inside.map(keyOf).filter((key) => key !== undefined));
  const kept = left.get(name);
  if (kept) {
    for (const key of keys) kept.delete(key);
    if (!kept.size) left.delete(name);
  }
  const saved = readSaved();
  const draft = saved?.cases[name];
  if (saved && draft) {
    const unsent = draft.filter(([key]) => !keys.has(key));
    if (unsent.length) saved.cases[name] = unsent;
    else delete saved.cases[name];
    writeSaved(saved);
  }
}

/**
 * What the agent typed in `sent` was sent, from a page of the case drawn
 * again while it was on its way (the language changed, the agent left and
 * came back): the page on screen now, in `root`, carried it over as typed.
 * There it is words already sent, not a draft to send a second time, so a
 * control of the same key still holding just what was sent shows again what
 * its page was drawn with. One changed since is the agent's next words.
 */
export function sentFrom(root: HTMLElement, sent: HTMLElement): void {
  const inside = sent.matches("input, textarea, select") ? [sent as Control] : controls(sent);
  const words = new Map<string, Value>();
  for (const control of inside) {
    const key = keyOf(control);
    const value = valueOf(control);
    if (key !== undefined && drawn.get(control) !== value) words.set(key, value);
  }
  for (const control of controls(root)) {
    const key = keyOf(control);
    const was = drawn.get(control);
    if (inside.includes(control) || key === undefined || was === undefined) continue;
    if (!words.has(key) || valueOf(control) !== words.get(key)) continue;
    if (typeof was === "boolean") {
      if (control instanceof HTMLInputElement) control.checked = was;
    } else {
      control.value = was;
    }
  }
}

// Whose typing `left` holds: kept while their sign-in runs out and they sign
// in again, forgotten when anyone else signs in on the page.
let leftBy = "";

/** Forgets what was kept for case `name` (done with), or for every case (signed out). */
export function forgetLeft(name?: string): void {
  if (name === undefined) {
    left.clear();
    sessionStorage.removeItem(SAVED_KEY);
    return;
  }
  left.delete(name);
  const saved = readSaved();
  if (saved && Object.hasOwn(saved.cases, name)) {
    delete saved.cases[name];
    writeSaved(saved);
  }
}

/** `agent` signed in: what someone else left typed here is not theirs to see. */
export function leftFor(agent: string): void {
  if (agent !== leftBy) left.clear();
  leftBy = agent;
  if (readSaved()?.agent !== agent) sessionStorage.removeItem(SAVED_KEY);
}

/** Whether the agent left a case with something typed on it and not sent. */
export function anyLeft(): boolean {
  return left.size > 0;
}

/**
 * What the agent typed on each case, saved in this tab's session storage as
 * they type: the page's memory (`left`, and the page on screen) goes with a
 * reload, a Back from a page they followed a link to, or a tab closed and
 * opened again by mistake; this comes back with the tab. The agent's own:
 * another agent signing in on the tab gets none of it (`leftFor`), and
 * signing out on purpose keeps nothing (`forgetLeft`).
 *
 * Beside each case's draft, the request ids it was sent under (`asked`, by
 * action; `savedRequest`), forgotten with the draft.
 */
const SAVED_KEY = "casemesh.console.drafts";
type Saved = {
  agent: string;
  cases: Record<string, [string, Value][]>;
  asked: Record<string, Record<string, [string, string]>>;
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether `value` is a list of pairs, each a string and something `second` accepts. */
function isPairs(value: unknown, second: (v: unknown) => boolean): boolean {
  return (
    Array.isArray(value) &&
    value.every(
      (p) => Array.isArray(p) && p.length === 2 && typeof p[0] === "string" && second(p[1]),
    )
  );
}

/**
 * What is saved, if it is what `writeSaved` writes. Anything else there
 * (written by another version of the page, or by hand) is ignored, as if
 * nothing were saved, rather than break the case's page.
 */
function readSaved(): Saved | undefined {
  const saved = fromSession(SAVED_KEY);
  if (!isRecord(saved) || typeof saved.agent !== "string" || !isRecord(saved.cases)) {
    return undefined;
  }
  const asked = saved.asked ?? {};
  const value = (v: unknown) => typeof v === "string" || typeof v === "boolean";
  const text = (v: unknown) => typeof v === "string";
  if (
    !Object.values(saved.cases).every((draft) => isPairs(draft, value)) ||
    !isRecord(asked) ||
    !Object.values(asked).every((ids) => isRecord(ids) && isPairs(Object.values(ids), text))
  ) {
    return undefined;
  }
  return { ...saved, asked } as Saved;
}

function writeSaved(saved: Saved): void {
  // A request id goes with the draft sent under it, and is forgotten with it.
  for (const name of Object.keys(saved.asked)) {
    if (!Object.hasOwn(saved.cases, name)) delete saved.asked[name];
  }
  try {
    if (Object.keys(saved.cases).length) sessionStorage.setItem(SAVED_KEY, JSON.stringify(saved));
    else sessionStorage.removeItem(SAVED_KEY);
  } catch {
    // More than the storage holds: the page's memory keeps it still, as before.
  }
}

/** What `agent` saved, or nothing saved yet if someone else saved what is there. */
function savedBy(agent: string): Saved {
  const saved = readSaved();
  return saved?.agent === agent ? saved : { agent, cases: {}, asked: {} };
}

/** Saves what `agent` typed on case `name`'s page (drawn in `root`): nothing typed, nothing kept. */
export function save(agent: string, name: string, root: HTMLElement): void {
  const saved = savedBy(agent);
  const changed = typed(root);
  if (changed.size) saved.cases[name] = [...changed];
  else delete saved.cases[name];
  writeSaved(saved);
}

/** What `agent` last typed on case `name`, as saved. */
export function savedFor(agent: string, name: string): Map<string, Value> {
  const saved = readSaved();
  const found = saved?.agent === agent && Object.hasOwn(saved.cases, name) ? saved.cases[name] : [];
  return new Map(found);
}

/**
 * Where the request id `agent` sends `action` on case `name` under is kept
 * (a `RetryKey`'s store): with the case's saved draft. A send whose answer
 * was lost leaves its words as a draft, given back when the page is loaded
 * again; sent again from there, they go under the same id, and the service
 * answers as it did the first time rather than storing them twice.
 */
export function savedRequest(agent: string, name: string, action: string): RetryKeyStore {
  return {
    read() {
      const saved = readSaved();
      const ids =
        saved?.agent === agent && Object.hasOwn(saved.asked, name) ? saved.asked[name] : {};
      return ids && Object.hasOwn(ids, action) ? ids[action] : undefined;
    },
    write(kept) {
      const saved = savedBy(agent);
      const ids = Object.hasOwn(saved.asked, name) ? (saved.asked[name] ?? {}) : {};
      if (kept) ids[action] = kept;
      else delete ids[action];
      if (Object.keys(ids).length) saved.asked[name] = ids;
      else delete saved.asked[name];
      writeSaved(saved);
    },
  };
}
