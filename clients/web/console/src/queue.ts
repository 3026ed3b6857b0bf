/**
 * The live queue: `ListQueueCases` in the server's order (the child-safety
 * lane first, then priority, then the earliest due time), kept current by
 * `WatchQueue`, which says `WATCHING` once it is in place and `HEARTBEAT`
 * every 20 s of quiet. The list is read after `WATCHING`. When the stream
 * drops, says nothing for 45 s, or the list cannot be read, it reconnects with
 * backoff, saying so, and reads the list again (changes made meanwhile were
 * not seen). Changes heard while a list is being read are laid over it
 * when it comes, so an older list never undoes a newer change.
 */

import {
  CaseType,
  Code,
  ConnectError,
  Priority,
  type QueueCase,
  SlaState,
  timestampDate,
} from "@casemesh/client";

import { currentToken, queue } from "./api";
import { textOr } from "./i18n";
import { $, clearError, duration, element, locale, shortId, showError, t } from "./ui";

/**
 * Every queue the service levels (`sla.json`) put a case in, in the order
 * agents think of them: each skill queue, then the queue its breached cases
 * are escalated to (`escalate_to`), so the agents who take escalations can
 * pick theirs.
 */
const QUEUES = [
  "child-safety",
  "child-safety-leads",
  "trust-safety",
  "trust-safety-leads",
  "copyright",
  "copyright-senior",
  "account",
  "content",
  "ads",
  "general",
  "tier2",
];
const TYPES: [CaseType, string][] = [
  [CaseType.TICKET, "TICKET"],
  [CaseType.REPORT_CASE, "REPORT_CASE"],
  [CaseType.APPEAL, "APPEAL"],
];
const SLA_STATES: [SlaState, string][] = [
  [SlaState.ON_TRACK, "ON_TRACK"],
  [SlaState.WARNING, "WARNING"],
  [SlaState.BREACHED, "BREACHED"],
  [SlaState.PAUSED, "PAUSED"],
];
const PAGE_SIZE = 200;
const REFRESH_MS = 60_000;
// A watch that says nothing for this long (the server says HEARTBEAT every 20 s) is taken as dead.
const SILENCE_MS = 45_000;
// The key of a case with no running clock: after every due time (as the server orders).
const NO_DUE = Number.MAX_SAFE_INTEGER;

function dueKey(c: QueueCase): number {
  const dues = c.sla
    .filter((clock) => clock.dueTime)
    .map((clock) => +timestampDate(clock.dueTime!));
  return dues.length ? Math.min(...dues) : NO_DUE;
}

/** The server's order: the child-safety lane, priority, earliest due time, age, name. */
function order(a: QueueCase, b: QueueCase): number {
  return (
    Number(b.childSafety) - Number(a.childSafety) ||
    b.priority - a.priority ||
    dueKey(a) - dueKey(b) ||
    (a.createTime ? +timestampDate(a.createTime) : 0) -
      (b.createTime ? +timestampDate(b.createTime) : 0) ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
}

export class QueueView {
  private cases = new Map<string, QueueCase>();
  private running = false;
  private watching: AbortController | undefined;
  private ticker: number | undefined;
  private refresher: number | undefined;
  private generation = 0;
  private more = false;
  /** Counts the lists asked for: only the answer to the latest is used. */
  private reads = 0;
  /** The changes heard since the list being read was asked for. */
  private heard: [string, QueueCase][] | undefined;
  private listeners: ((change: string, c: QueueCase) => void)[] = [];

  constructor() {
    for (const id of ["filter-queue", "filter-type", "filter-sla"]) {
      $(id).addEventListener("change", () => {
        if (this.running) this.restart();
      });
    }
  }

  /** Tells `handler` of every change the live queue hears (whatever the filters show). */
  onChange(handler: (change: string, c: QueueCase) => void): void {
    this.listeners.push(handler);
  }

  /** The queue chosen in the filter, for claims too: "next case" takes from it. */
  chosenQueues(): string[] {
    const chosen = $<HTMLSelectElement>("filter-queue").value;
    return chosen ? [chosen] : [];
  }

  private chosenTypes(): CaseType[] {
    const v = $<HTMLSelectElement>("filter-type").value;
    return v ? [Number(v) as CaseType] : [];
  }

  private chosenSla(): SlaState[] {
    const v = $<HTMLSelectElement>("filter-sla").value;
    return v ? [Number(v) as SlaState] : [];
  }

  private matches(c: QueueCase): boolean {
    const queues = this.chosenQueues();
    const types = this.chosenTypes();
    const states = this.chosenSla();
    return (
      (!queues.length || queues.includes(c.queue)) &&
      (!types.length || types.includes(c.type)) &&
      (!states.length || states.includes(c.slaState))
    );
  }

  renderLabels(): void {
    const fill = (id: string, options: [string, string][]) => {
      const el = $<HTMLSelectElement>(id);
      const chosen = el.value;
      el.replaceChildren(...options.map(([v, label]) => element("option", label, { value: v })));
      el.value = chosen;
    };
    fill("filter-queue", [
      ["", t("allQueues")],
      ...QUEUES.map((q): [string, string] => [q, textOr(locale, `queue.${q}`, q)]),
    ]);
    fill("filter-type", [
      ["", t("allTypes")],
      ...TYPES.map(([v, k]): [string, string] => [String(v), textOr(locale, `type.${k}`, k)]),
    ]);
    fill("filter-sla", [
      ["", t("allSla")],
      ...SLA_STATES.map(([v, k]): [string, string] => [String(v), textOr(locale, `sla.${k}`, k)]),
    ]);
    this.render();
  }

  start(): void {
    this.running = true;
    this.restart();
    this.ticker ??= window.setInterval(() => this.tick(), 1000);
    // The list follows the watch's WATCHING, so nothing should fall between
    // them; still, read it again now and then, as a safety net.
    this.refresher ??= window.setInterval(() => {
      if ($("live").dataset.state === "live") void this.load().catch(() => undefined);
    }, REFRESH_MS);
  }

  stop(): void {
    this.running = false;
    this.generation += 1;
    this.reads += 1;
    this.heard = undefined;
    this.watching?.abort();
    if (this.ticker !== undefined) clearInterval(this.ticker);
    if (this.refresher !== undefined) clearInterval(this.refresher);
    this.ticker = this.refresher = undefined;
    this.cases.clear();
  }

  private restart(): void {
    this.generation += 1;
    this.watching?.abort();
    void this.watch(this.generation);
  }

  /**
   * Reads the list and shows it with every change heard since it was asked
   * for laid over it again, in the order heard. Why that is right: each change
   * carries the case's whole state as read after the change, and the stream
   * delivers them in order. A change heard during the read is either newer than
   * the list (laying it over is the point) or older; if older, any later write
   * the list shows has its own change still to come, after this one, which puts
   * the newer state back. So the rows end where the stream is, never behind it.
   */
  private async load(): Promise<void> {
    const read = ++this.reads;
    this.heard = [];
    let answer: Awaited<ReturnType<typeof queue.listQueueCases>>;
    try {
      answer = await queue.listQueueCases({
        pageSize: PAGE_SIZE,
        queues: this.chosenQueues(),
        types: this.chosenTypes(),
        slaStates: this.chosenSla(),
      });
    } catch (err) {
      if (read === this.reads) this.heard = undefined;
      throw err;
    }
    if (read !== this.reads) return; // a newer list was asked for, or the view stopped
    const cases = new Map(answer.queueCases.map((c) => [c.name, c]));
    for (const [change, c] of this.heard ?? []) this.applyTo(cases, change, c);
    this.heard = undefined;
    this.cases = cases;
    this.more = Boolean(answer.nextPageToken);
    // How many lists have been shown (tests wait on it).
    $("queue-rows").dataset.lists = String(Number($("queue-rows").dataset.lists ?? 0) + 1);
    this.render();
  }

  /**
   * Watches until stopped or the filters change; a dropped stream is reopened
   * with backoff. The list is read once the watch says `WATCHING` (so no change
   * falls between the list and the watch); a failed list read or a stream that
   * says nothing (not even `HEARTBEAT`) for `SILENCE_MS` ends the attempt, and
   * the next one reads the list again.
   */
  private async watch(generation: number): Promise<void> {
    let attempt = 0;
    while (generation === this.generation) {
      const abort = new AbortController();
      this.watching = abort;
      // Set when this attempt is ended from inside (a failed list, a silent
      // stream), to tell that abort from a stop or a filter change.
      let failed: { error: unknown } | undefined;
      const fail = (error: unknown) => {
        if (abort.signal.aborted) return;
        failed = { error };
        abort.abort();
      };
      // Once this attempt is over, its list arriving late must not call the queue live.
      let over = false;
      let silence: number | undefined;
      const heard = () => {
        window.clearTimeout(silence);
        silence = window.setTimeout(() => fail(undefined), SILENCE_MS);
      };
      this.live(attempt ? t("reconnecting", { n: attempt }) : t("connecting"), "connecting");
      // The gateway ends a watch when the token it began with expires.
      const watchedWith = currentToken();
      try {
        heard();
        const stream = queue.watchQueue({ queues: this.chosenQueues() }, { signal: abort.signal });
        // Live: the watch said WATCHING (it is in place) and the list is read.
        // Changes heard while the list is read are laid over it.
        let listing = false;
        for await (const change of stream) {
          heard();
          if (change.change === "WATCHING") {
            if (listing) continue;
            listing = true;
            void this.load().then(
              () => {
                if (over) return;
                attempt = 0;
                this.live(t("live"), "live");
                this.calm();
              },
              (err: unknown) => {
                if (!over) fail(err);
              },
            );
            continue;
          }
          if (change.change === "HEARTBEAT") continue;
          if (change.queueCase) this.apply(change.change, change.queueCase);
        }
      } catch (err) {
        if (generation !== this.generation) return;
        if (failed === undefined) {
          if (abort.signal.aborted) return;
          if (ConnectError.from(err).code === Code.PermissionDenied) {
            this.live(t("watchRefused"), "refused");
            return;
          }
          if (ConnectError.from(err).code === Code.Unauthenticated) {
            // Renewed since the watch began: watch again with the new token.
            if (currentToken() && currentToken() !== watchedWith) continue;
            showError(err); // the sign-in ran out: sign in again, not reconnect for ever
            return;
          }
        }
      } finally {
        over = true;
        window.clearTimeout(silence);
      }
      if (generation !== this.generation) return;
      // A failed list read is shown (a silent stream just reconnects).
      if (failed?.error !== undefined) {
        this.raise(failed.error);
        if (generation !== this.generation) return; // signed out (refused), say
      }
      attempt += 1;
      this.live(t("reconnecting", { n: attempt }), "reconnecting");
      // 1, 2, 4 … up to 30 seconds, with jitter so a restarted gateway is not stormed.
      const wait = Math.min(30_000, 1000 * 2 ** (attempt - 1)) * (0.75 + Math.random() / 2);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /**
   * Shows a failed list read in the page's alert, unless the alert says
   * something else already: showError would clear it first, and with it the
   * notes a refused form has beside its fields. (A sign-in that ran out is
   * always said: the agent is signed out.) The alert is marked as the
   * queue's: any other shown since (a change the agent made that failed too,
   * with the same words) clears the mark, and stays.
   */
  private raise(err: unknown): void {
    const alert = $("error");
    const other = !alert.hidden && alert.dataset.by !== "queue";
    if (other && ConnectError.from(err).code !== Code.Unauthenticated) return;
    showError(err);
    alert.dataset.by = "queue";
  }

  /** The list read again: the alert its failure raised goes, if still the queue's. */
  private calm(): void {
    if (!$("error").hidden && $("error").dataset.by === "queue") clearError();
  }

  private live(message: string, state: string): void {
    const el = $("live");
    el.textContent = message;
    el.dataset.state = state;
  }

  private apply(change: string, c: QueueCase): void {
    for (const listener of this.listeners) listener(change, c);
    this.heard?.push([change, c]);
    this.applyTo(this.cases, change, c);
    this.render();
  }

  private applyTo(cases: Map<string, QueueCase>, change: string, c: QueueCase): void {
    if (change === "REMOVED" || !this.matches(c)) {
      cases.delete(c.name);
    } else {
      cases.set(c.name, c);
    }
  }

  private render(): void {
    const rows = [...this.cases.values()].sort(order).map((c) => this.row(c));
    $("queue-rows").replaceChildren(...rows);
    $("queue-caption").textContent = this.more
      ? t("queueCaptionMore", { count: rows.length })
      : t("queueCaption", { count: rows.length });
    this.tick();
  }

  private row(c: QueueCase): HTMLTableRowElement {
    const type = CaseType[c.type] ?? "UNSPECIFIED";
    const row = element("tr", "", {
      "data-name": c.name,
      "data-queue": c.queue,
      "data-sla": SlaState[c.slaState] ?? "UNSPECIFIED",
      "data-waiting": String(c.waiting),
      "data-holder": c.holder,
    });
    if (c.childSafety) row.classList.add("child-safety");
    if (c.holder) row.classList.add("held");

    const name = element("td");
    name.append(
      element("span", shortId(c.name), { class: "case-id", title: c.name }),
      element("span", ` ${textOr(locale, `type.${type}`, type)}`, { class: "meta" }),
      element("br"),
      element("span", c.category, { class: "meta" }),
    );
    const lane = element("td", textOr(locale, `queue.${c.queue}`, c.queue));
    const priorityName = Priority[c.priority] ?? "UNSPECIFIED";
    const priority = element("td");
    priority.append(
      element("span", textOr(locale, `priority.${priorityName}`, priorityName), {
        class: `priority p${c.priority}`,
      }),
    );
    if (c.escalated) {
      priority.append(" ", element("span", t("escalated"), { class: "mark escalated" }));
    }
    const status = element(
      "td",
      c.waiting ? t("waiting") : textOr(locale, `qstatus.${c.status}`, c.status),
    );
    const sla = element("td");
    sla.append(this.clock(c));
    if (c.slaState === SlaState.BREACHED) {
      sla.append(" ", element("span", t("breached"), { class: "mark breached" }));
    }
    const holder = element("td", c.holder || "—");
    if (c.holder && c.leaseExpireTime) {
      holder.append(
        element("br"),
        element("span", "", {
          class: "meta",
          "data-lease": String(+timestampDate(c.leaseExpireTime)),
        }),
      );
    }
    row.append(name, lane, priority, status, sla, holder);
    return row;
  }

  /** The clock an agent races: the earliest running due time, or paused. */
  private clock(c: QueueCase): HTMLElement {
    if (c.slaState === SlaState.PAUSED || c.waiting) {
      return element("span", t("paused"), { class: "sla paused" });
    }
    const running = c.sla
      .filter((clock) => clock.dueTime && !clock.metTime)
      .sort((a, b) => +timestampDate(a.dueTime!) - +timestampDate(b.dueTime!))[0];
    if (!running?.dueTime) {
      return element("span", textOr(locale, `sla.${SlaState[c.slaState]}`, ""), { class: "sla" });
    }
    return element("span", "", {
      class: `sla ${SlaState[c.slaState]?.toLowerCase() ?? ""}`,
      "data-due": String(+timestampDate(running.dueTime)),
      "data-clock": running.name,
    });
  }

  /** Counts every clock on screen down, once a second. */
  private tick(): void {
    const now = Date.now();
    for (const el of document.querySelectorAll<HTMLElement>("#queue-rows [data-due]")) {
      const left = Number(el.dataset.due) - now;
      const clock = textOr(locale, `clock.${el.dataset.clock ?? ""}`, el.dataset.clock ?? "");
      el.textContent =
        left >= 0
          ? t("dueIn", { clock, left: duration(left) })
          : t("overdue", { clock, left: duration(left) });
    }
    for (const el of document.querySelectorAll<HTMLElement>("#queue-rows [data-lease]")) {
      el.textContent = t("leaseLeft", { left: duration(Number(el.dataset.lease) - now) });
    }
  }
}
