/** What every part of the console shares: the language, the DOM helpers, the status line and errors. */

import {
  Code,
  ConnectError,
  errorMessage,
  fieldViolations,
  type RetryKey,
  timestampDate,
  unreachable,
  violationText,
} from "@casemesh/client";
import { element } from "@casemesh/client/page";

import { type Key, type Locale, initialLocale, text } from "./i18n";

type Timestamp = Parameters<typeof timestampDate>[0];

const LOCALE_KEY = "casemesh.locale";

export let locale: Locale = initialLocale(
  localStorage.getItem(LOCALE_KEY),
  navigator.languages.length ? navigator.languages : [navigator.language],
);

export function setLocale(chosen: Locale): void {
  locale = chosen;
  localStorage.setItem(LOCALE_KEY, chosen);
}

/** What this tab's session storage keeps under `key`, read as JSON: nothing if it holds none. */
export function fromSession<T = unknown>(key: string): T | undefined {
  try {
    const saved = sessionStorage.getItem(key);
    return saved ? (JSON.parse(saved) as T) : undefined;
  } catch {
    return undefined;
  }
}

export const t = (key: Key, values?: Record<string, string | number>) => text(locale, key, values);

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) {
    throw new Error(`#${id} is missing from index.html`);
  }
  return found as T;
}

export { element };

export function button(label: string, onClick: () => Promise<void> | void, attrs = {}) {
  const made = element("button", label, { type: "button", ...attrs });
  made.addEventListener("click", () => void busy(made, async () => onClick()));
  return made;
}

// The short number agents and requesters both see.
export { shortId } from "@casemesh/client";

export function when(time: Timestamp | undefined): HTMLTimeElement | string {
  if (!time) {
    return "—";
  }
  const date = timestampDate(time);
  const formatted = new Intl.DateTimeFormat(locale, {
    dateStyle: "medium",
    timeStyle: "short",
  }).format(date);
  return element("time", formatted, { datetime: date.toISOString() });
}

/** "3 h 05 min", "4 min 10 s": a span of time as an agent reads it at a glance. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(Math.abs(ms) / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h >= 24) return t("days", { d: Math.floor(h / 24), h: h % 24 });
  if (h) return t("hoursMinutes", { h, m: String(m).padStart(2, "0") });
  return t("minutesSeconds", { m, s: String(s % 60).padStart(2, "0") });
}

export function say(message: string): void {
  $("status").textContent = message;
}

export function clearError(): void {
  $("error").hidden = true;
  // Whose alert it was (the queue marks its own): gone with it.
  delete $("error").dataset.by;
  $("error-message").textContent = "";
  $("error-list").replaceChildren();
  $("error-reload").hidden = true;
  for (const shown of document.querySelectorAll<HTMLElement>(".field-error")) {
    shown.hidden = true;
    shown.textContent = "";
  }
  for (const invalid of document.querySelectorAll("[aria-invalid]")) {
    invalid.removeAttribute("aria-invalid");
  }
}

let reloadCurrent: (() => Promise<void>) | undefined;

/** What the "Reload" button of a stale-etag error reads again. */
export function onReload(reload: (() => Promise<void>) | undefined): void {
  reloadCurrent = reload;
}

export async function reload(): Promise<void> {
  clearError();
  await reloadCurrent?.();
}

/** Failures "Reload" tries again, whatever they were (see `retryWith`). */
const retryable = new WeakSet<object>();

/**
 * Marks a failure as one "Reload" tries again by running `again` (a case that
 * could not be opened, settings that could not be read): the button shows
 * with it, whatever the error. Returns the error, to be thrown.
 */
export function retryWith(err: unknown, again: () => Promise<void>): unknown {
  onReload(again);
  if (typeof err === "object" && err !== null) retryable.add(err);
  return err;
}

let signedOut: () => void = () => undefined;
export function onSignedOut(handler: () => void): void {
  signedOut = handler;
}

/**
 * Shows a failed call: the server's message; for `invalid_argument` each field
 * violation next to its field (inputs carry the field's name in
 * `data-field`), or in the list under the message when its field has no place
 * for it (never dropped); for a change someone else made first, or a failure
 * marked by `retryWith`, a "Reload" button.
 */
export function showError(err: unknown): void {
  clearError();
  const error = ConnectError.from(err);
  if (error.code === Code.Unauthenticated) {
    signedOut();
    $("error-message").textContent = t("signInAgain");
    $("error").hidden = false;
    return;
  }
  let first: HTMLElement | undefined;
  for (const violation of fieldViolations(error)) {
    const input = placeOf(violation.field);
    const note = input?.id ? document.getElementById(`${input.id}-error`) : null;
    if (note) {
      note.textContent = note.textContent
        ? `${note.textContent} ${violationText(violation)}`
        : violationText(violation);
      note.hidden = false;
    } else {
      $("error-list").append(element("li", `${violation.field}: ${violationText(violation)}`));
    }
    if (input) {
      input.setAttribute("aria-invalid", "true");
      first ??= input;
    }
  }
  if (error.code === Code.Aborted) {
    $("error-message").textContent = t("staleChange");
    $("error-reload").hidden = !reloadCurrent;
  } else if (error.code === Code.PermissionDenied) {
    $("error-message").textContent = `${t("notAllowed")} ${errorMessage(error)}`;
  } else if (unreachable(err)) {
    $("error-message").textContent = t("unreachable");
  } else {
    $("error-message").textContent = first
      ? t("fixFields")
      : `${t("errorPrefix")}${errorMessage(error)}`;
  }
  if (typeof err === "object" && err !== null && retryable.has(err)) {
    $("error-reload").hidden = !reloadCurrent;
  }
  $("error").hidden = false;
  say("");
  (first instanceof HTMLFieldSetElement ? first.querySelector("input") : first)?.focus();
}

/** The input for a field the server names: `statement.content_type[0]` → `[data-field="statement.content_type"]`. */
function placeOf(field: string): HTMLElement | undefined {
  let name = field;
  while (name) {
    const found = document.querySelector<HTMLElement>(
      `section:not([hidden]) [data-field="${CSS.escape(name)}"]`,
    );
    if (found) return found;
    const cut = name.replace(/\[\d+\]$/, "");
    name = cut !== name ? cut : name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : "";
  }
  return undefined;
}

/**
 * A form sent by its button only: Enter in a one-line field (a name, an
 * address, a date) does not send it half-written, as a browser would. For a
 * form whose sending cannot be taken back: a decision.
 */
export function sentByItsButtonOnly(form: HTMLFormElement): void {
  form.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.isComposing && e.target instanceof HTMLInputElement) {
      e.preventDefault();
    }
  });
}

/**
 * Asks the question of `dialog` (a modal whose buttons close it with a
 * value): whether the agent chose its "leave" answer. Escape answers no.
 */
export function agreesToLeave(dialog: HTMLDialogElement): Promise<boolean> {
  dialog.returnValue = "";
  const answered = new Promise<boolean>((resolve) =>
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "leave"), {
      once: true,
    }),
  );
  dialog.showModal();
  return answered;
}

/** Runs a call for a button or form, refusing a second press while it runs. */
export async function busy(control: HTMLButtonElement | null, work: () => Promise<void>) {
  if (control?.disabled) {
    return;
  }
  if (control) control.disabled = true;
  try {
    await work();
  } catch (err) {
    showError(err);
  } finally {
    if (control) control.disabled = false;
  }
}

let fieldCount = 0;

/**
 * A labelled form field with its error line: `input` gets an id, the server's
 * field name (`data-field`) and `aria-describedby` pointing at the error.
 */
export function field(
  label: string,
  input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
  serverField = "",
  hint = "",
): HTMLDivElement {
  fieldCount += 1;
  input.id ||= `f${fieldCount}`;
  if (serverField) {
    input.dataset.field = serverField;
    // What the agent typed here is known by this key when the page is drawn again.
    input.dataset.draft ||= serverField;
  }
  const wrap = element("div", "", { class: "field" });
  const described = [`${input.id}-error`];
  wrap.append(element("label", label, { for: input.id }), input);
  if (hint) {
    wrap.append(element("p", hint, { id: `${input.id}-hint`, class: "hint" }));
    described.unshift(`${input.id}-hint`);
  }
  input.setAttribute("aria-describedby", described.join(" "));
  const error = element("p", "", { id: `${input.id}-error`, class: "field-error" });
  error.hidden = true;
  wrap.append(error);
  return wrap;
}

/**
 * A fieldset for a group of fields the server also names as a whole
 * (`affected_uploader`, `statement.restrictions`): its legend, then the line
 * where what is wrong with the whole group shows; the fields follow.
 */
export function group(legend: string, serverField: string, id: string): HTMLFieldSetElement {
  const set = element("fieldset", "", { class: "field", id });
  set.dataset.field = serverField;
  const error = element("p", "", { id: `${id}-error`, class: "field-error" });
  error.hidden = true;
  set.setAttribute("aria-describedby", error.id);
  set.append(element("legend", legend), error);
  return set;
}

export function select(options: [string, string][], value = ""): HTMLSelectElement {
  const made = element("select");
  made.append(...options.map(([v, label]) => element("option", label, { value: v })));
  made.value = value;
  return made;
}

/** A group of checkboxes as a fieldset (the server's field name on the fieldset). */
export function checkboxes(
  legend: string,
  options: [string, string][],
  serverField: string,
  chosen: string[] = [],
): HTMLFieldSetElement {
  fieldCount += 1;
  const set = element("fieldset", "", { class: "field checks", id: `f${fieldCount}` });
  set.dataset.field = serverField;
  set.append(element("legend", legend));
  for (const [value, label] of options) {
    const box = element("input", "", { type: "checkbox", value });
    box.checked = chosen.includes(value);
    const wrap = element("label", "", { class: "check" });
    wrap.append(box, ` ${label}`);
    set.append(wrap);
  }
  const error = element("p", "", { id: `${set.id}-error`, class: "field-error" });
  error.hidden = true;
  set.setAttribute("aria-describedby", error.id);
  set.append(error);
  return set;
}

export function checked(set: HTMLFieldSetElement): string[] {
  return [...set.querySelectorAll<HTMLInputElement>("input:checked")].map((box) => box.value);
}

/** A definition list of facts: [term, description] pairs. */
export function facts(rows: [string, Node | string][]): HTMLDListElement {
  const list = element("dl", "", { class: "facts" });
  for (const [term, value] of rows) {
    const dd = element("dd");
    dd.append(value);
    list.append(element("dt", term), dd);
  }
  return list;
}

/** What a case's page may ask of the console around it. */
export interface CaseHost {
  /** Puts the case's page, as drawn from the server, on screen. */
  draw(page: HTMLElement): void;
  /**
   * Reads the case again and draws it (after the agent's action changed it),
   * with `keepTyped` keeping what the agent typed and did not send. Not if
   * the agent has gone elsewhere meanwhile: they stay where they are.
   */
  reopen(keepTyped?: boolean): Promise<void>;
  /** What the agent typed in `what` (a field, or a form's fields) was sent: never given back as a draft. */
  sent(what: HTMLElement): void;
  /**
   * Request ids for the change `action` (its button's id) makes to this
   * case, kept with what the agent typed on it: words whose answer was lost,
   * sent again from the page loaded again, are the same request.
   */
  retryKey(action: string): RetryKey;
  /**
   * The agent's action took the case out of their hands (solved, waiting,
   * decided): the lease on it ends, and the agent, if still on it, goes back
   * to the queue.
   */
  done(message: string): void;
  /** The same, staying on the case to show what was done. */
  ended(message: string): void;
  heading(text: string): void;
  /** A figure for one piece of this case's evidence (read into the case's own shelf). */
  preview(name: string): HTMLElement;
  /** Whether the agent holds this case under a live lease. */
  holds(name: string): boolean;
}

// Request ids for one kind of change from one form (kept across a retry).
export { RetryKey } from "@casemesh/client";
