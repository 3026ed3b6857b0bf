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

type Control = HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;
type Value = string | boolean;

/** What each control showed when its page was drawn. */
const drawn = new WeakMap<Control, Value>();

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

/** The values the agent changed since the page was drawn, by key. */
export function typed(root: HTMLElement): Map<string, Value> {
  const changed = new Map<string, Value>();
  for (const control of controls(root)) {
    const key = keyOf(control);
    const value = valueOf(control);
    if (key && drawn.get(control) !== value) changed.set(key, value);
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
 * agent left the case while it was on its way).
 */
export function forgetSent(name: string, sent: HTMLElement): void {
  const kept = left.get(name);
  if (!kept) return;
  const inside = sent.matches("input, textarea, select") ? [sent as Control] : controls(sent);
  for (const control of inside) {
    const key = keyOf(control);
    if (key !== undefined) kept.delete(key);
  }
  if (!kept.size) left.delete(name);
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
  if (name === undefined) left.clear();
  else left.delete(name);
}

/** `agent` signed in: what someone else left typed here is not theirs to see. */
export function leftFor(agent: string): void {
  if (agent !== leftBy) left.clear();
  leftBy = agent;
}
