/**
 * A ticket as an agent works it: the facts, the description and screenshots,
 * the history with internal notes set apart, and the actions: reply, internal
 * note, request info, hold, solve, assign, each sent with the etag of the
 * ticket as shown (someone else's change first gets a "Reload"). Macros fill
 * the message in the requester's language.
 * Beside it, the requester's other tickets (SearchTickets by requester).
 */

import {
  Channel,
  Priority,
  type Ticket,
  TicketStatus,
  type TicketEvent,
  ticketHistory,
} from "@casemesh/client";

import { claims, tickets } from "./api";
import { type Locale, textOr } from "./i18n";
import { fill, type Macro, type MacroAction, macros } from "./macros";
import {
  $,
  agreesToLeave,
  busy,
  type CaseHost,
  clearError,
  element,
  facts,
  field,
  locale,
  say,
  select,
  shortId,
  t,
  when,
} from "./ui";

export function statusLabel(status: TicketStatus): string {
  const name = TicketStatus[status] ?? "UNSPECIFIED";
  return textOr(locale, `status.${name}`, name);
}

function priorityLabel(priority: Priority): string {
  const name = Priority[priority] ?? "UNSPECIFIED";
  return textOr(locale, `priority.${name}`, name);
}

function event(e: TicketEvent, host: CaseHost): HTMLLIElement {
  const item = element("li", "", { "data-type": e.type });
  if (e.internal) {
    item.classList.add("internal");
    item.append(element("strong", t("internalNote"), { class: "internal-label" }), " ");
  }
  item.append(when(e.time), " ");
  item.append(element("span", textOr(locale, `event.${e.type}`, e.type), { class: "event" }));
  item.append(element("span", ` · ${e.actor} · ${statusLabel(e.status)}`, { class: "meta" }));
  if (e.text && e.type !== "TicketCreated") {
    item.append(element("p", e.text, { class: "text" }));
  }
  // What the ticket was opened with is shown under its description.
  if (e.evidence.length && e.type !== "TicketCreated") {
    const shown = element("div", "", { class: "previews" });
    shown.append(...e.evidence.map((ref) => host.preview(ref.name)));
    item.append(shown);
  }
  return item;
}

export async function openTicket(name: string, host: CaseHost): Promise<void> {
  const [ticket, history] = await Promise.all([
    tickets.getTicket({ name }),
    ticketHistory(tickets, name),
  ]);
  const side = render(ticket, history, host);
  // The requester's history beside it: not waited for, so a slow search
  // never holds up the ticket the agent came for.
  void requesterHistory(ticket, side);
}

/**
 * The requester's other tickets (SearchTickets, agents only), best effort,
 * put in the side column once found: only while that column is on screen,
 * so a late answer lands neither on a page drawn again since (which reads
 * its own) nor on another case the agent moved to.
 */
async function requesterHistory(ticket: Ticket, side: HTMLElement): Promise<void> {
  let theirs: Ticket[];
  try {
    theirs = (await tickets.searchTickets({ requester: ticket.requester, pageSize: 11 })).tickets;
  } catch {
    return; // the ticket is what matters; its requester's list can be read on reload
  }
  if (!side.isConnected) return;
  side.append(others(theirs.filter((other) => other.name !== ticket.name).slice(0, 10)));
}

function others(list: Ticket[]): HTMLElement {
  const section = element("section", "", { "aria-labelledby": "other-tickets-heading" });
  section.append(element("h2", t("otherTickets"), { id: "other-tickets-heading" }));
  if (!list.length) {
    section.append(element("p", t("noOtherTickets"), { class: "note" }));
    return section;
  }
  const items = element("ul", "", { class: "other-tickets" });
  for (const other of list) {
    const item = element("li", "", { "data-ticket": other.name });
    item.append(
      element("a", shortId(other.name), { href: `#${other.name}` }),
      ` ${other.subject} · ${statusLabel(other.status)} · `,
      when(other.createTime),
    );
    items.append(item);
  }
  section.append(items);
  return section;
}

/** Draws the ticket; returns its side column. */
function render(ticket: Ticket, events: TicketEvent[], host: CaseHost): HTMLElement {
  const id = shortId(ticket.name);
  host.heading(t("ticketHeading", { id, subject: ticket.subject }));
  const contact = (ticket.contact?.channels ?? [])
    .map((c) =>
      c === Channel.SMS
        ? `${t("channelSms")} ${ticket.contact?.phone ?? ""}`
        : `${t("channelEmail")} ${ticket.contact?.email ?? ""}`,
    )
    .join(", ");
  const status = element("span", statusLabel(ticket.status), {
    id: "ticket-status",
    "data-status": TicketStatus[ticket.status] ?? "UNSPECIFIED",
  });
  const summary = facts([
    [t("ticketStatus"), status],
    [t("colPriority"), priorityLabel(ticket.priority)],
    [t("category"), ticket.category],
    [t("requester"), ticket.requester],
    [t("assignee"), ticket.assignee || t("nobody")],
    [t("requesterLanguage"), ticket.locale],
    [t("updatesBy"), contact],
    [t("created"), when(ticket.createTime)],
  ]);

  const description = element("section", "", { "aria-labelledby": "description-heading" });
  description.append(
    element("h2", t("description"), { id: "description-heading" }),
    element("p", ticket.description, { class: "text" }),
  );
  if (ticket.evidence.length) {
    const shown = element("div", "", { class: "previews" });
    shown.append(...ticket.evidence.map((ref) => host.preview(ref.name)));
    description.append(shown);
  }

  const timeline = element("section", "", { "aria-labelledby": "timeline-heading" });
  timeline.append(
    element("h2", t("timeline"), { id: "timeline-heading" }),
    element("ol", "", { class: "history", "aria-labelledby": "timeline-heading" }),
  );
  timeline.querySelector("ol")?.append(...events.map((e) => event(e, host)));

  const [columns, main, side] = [
    element("div", "", { class: "columns" }),
    element("div", "", { class: "main-col" }),
    element("div", "", { class: "side-col" }),
  ];
  main.append(description, timeline);
  side.append(summary, work(ticket, host), assign(ticket, host));
  columns.append(main, side);
  host.draw(columns);
  return side;
}

/** The reply box, its macros and the actions that send it. */
function work(ticket: Ticket, host: CaseHost): HTMLElement {
  const requesterLocale: Locale = ticket.locale === "en" ? "en" : "zh-CN";
  const section = element("section", "", { class: "work", "aria-labelledby": "work-heading" });
  section.append(element("h2", t("respond"), { id: "work-heading" }));

  const macro = select(
    [["", t("noMacro")], ...macros.map((m): [string, string] => [m.id, m.title[locale]])],
    "",
  );
  macro.id = "macro";
  const reply = element("textarea", "", { rows: "8" });
  reply.id = "reply";
  reply.setAttribute("aria-keyshortcuts", "r");
  const buttons = element("div", "", { class: "actions" });

  const act = (
    id: string,
    label: string,
    serverField: string,
    call: (text: string, requestId: string) => Promise<Ticket>,
    after: (updated: Ticket) => Promise<void> | void,
  ) => {
    const made = element("button", label, { type: "button", id });
    const retry = host.retryKey(id);
    made.addEventListener(
      "click",
      () =>
        void busy(made, async () => {
          clearError();
          reply.dataset.field = serverField;
          const text = reply.value.trim();
          const updated = await call(text, retry.for(text));
          // Sent: the words are the ticket's now. Left in the box, a redraw
          // that fails would have them sent a second time; nor are they given
          // back as a draft if the agent left the ticket meanwhile, nor left in
          // the box of a page drawn again meanwhile (told while this box still
          // holds them, to know them there).
          host.sent(reply);
          reply.value = "";
          await after(updated);
          // Until the page shows the change, the same words sent again are the
          // same request, answered as it was rather than stored twice.
          retry.done();
        }),
    );
    buttons.append(made);
    return made;
  };
  const reopen = async (message: string) => {
    say(message);
    // What the agent typed elsewhere on the page (an assignee) stays.
    await host.reopen(true);
  };
  act(
    "send-reply",
    t("sendReply"),
    "body",
    (text, requestId) =>
      tickets.addComment({ name: ticket.name, body: text, etag: ticket.etag, requestId }),
    () => reopen(t("replySent")),
  );
  act(
    "add-note",
    t("addNote"),
    "body",
    (text, requestId) =>
      tickets.addComment({
        name: ticket.name,
        body: text,
        internal: true,
        etag: ticket.etag,
        requestId,
      }),
    () => reopen(t("noteAdded")),
  );
  act(
    "request-info",
    t("requestInfo"),
    "message",
    (text, requestId) =>
      tickets.requestInfo({ name: ticket.name, message: text, etag: ticket.etag, requestId }),
    () => host.done(t("infoRequested", { id: shortId(ticket.name) })),
  );
  act(
    "hold",
    t("hold"),
    "reason",
    (text, requestId) =>
      tickets.holdTicket({ name: ticket.name, reason: text, etag: ticket.etag, requestId }),
    () => host.done(t("putOnHold", { id: shortId(ticket.name) })),
  );
  const solve = act(
    "solve",
    t("solve"),
    "resolution",
    (text, requestId) =>
      tickets.solveTicket({ name: ticket.name, resolution: text, etag: ticket.etag, requestId }),
    () => host.done(t("solved", { id: shortId(ticket.name) })),
  );
  solve.classList.add("primary");
  solve.setAttribute("aria-keyshortcuts", "s");

  const byAction: Record<MacroAction, string> = {
    solve: "solve",
    request_info: "request-info",
    reply: "send-reply",
  };
  const filled = (m: Macro) =>
    fill(m.body[requesterLocale], {
      requester: ticket.requester,
      ticket: shortId(ticket.name),
      agent: claims().sub,
    });
  // What the box holds came from this choice (the select shows it again
  // when the agent keeps their own words).
  let shownChoice = macro.value;
  const choose = async () => {
    const chosen = macros.find((m) => m.id === macro.value);
    if (!chosen) {
      shownChoice = macro.value;
      for (const b of buttons.querySelectorAll("button")) b.classList.remove("suggested");
      return;
    }
    // Words of the agent's own in the box are asked about before a macro
    // replaces them; a macro's words as filled in are not (arrowing through
    // the list picks each in turn).
    const own = reply.value.trim() !== "" && !macros.some((m) => filled(m) === reply.value);
    if (own && !(await agreesToLeave($<HTMLDialogElement>("macro-dialog")))) {
      macro.value = shownChoice;
      return;
    }
    shownChoice = macro.value;
    reply.value = filled(chosen);
    for (const b of buttons.querySelectorAll("button")) b.classList.remove("suggested");
    const suggested = document.getElementById(byAction[chosen.action]);
    suggested?.classList.add("suggested");
    say(t("macroFilled", { action: suggested?.textContent ?? "" }));
  };
  macro.addEventListener("change", () => void choose());

  const closed = ticket.status === TicketStatus.CLOSED || ticket.status === TicketStatus.CANCELLED;
  section.append(
    field(t("macro"), macro, "", t("macroHint", { language: ticket.locale })),
    field(t("message"), reply, "body", t("messageHint")),
    buttons,
  );
  if (closed) {
    for (const b of section.querySelectorAll("button, textarea, select")) {
      (b as HTMLButtonElement).disabled = true;
    }
  }
  if (!host.holds(ticket.name)) {
    section.append(element("p", t("notHeld"), { class: "note" }));
  }
  return section;
}

function assign(ticket: Ticket, host: CaseHost): HTMLElement {
  const section = element("section", "", { "aria-labelledby": "assign-heading" });
  section.append(element("h2", t("assignHeading"), { id: "assign-heading" }));
  const who = element("input", "", { autocomplete: "off", placeholder: claims().sub });
  const priority = select(
    [
      ["0", t("keepPriority")],
      ...[Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT].map(
        (p): [string, string] => [String(p), priorityLabel(p)],
      ),
    ],
    "0",
  );
  const go = element("button", t("assign"), { type: "button", id: "assign" });
  // Pressed again after a lost answer, the same assignment is the same
  // request: the service answers as it did, rather than refuse its own change
  // as someone else's (the etag moved on).
  const retry = host.retryKey("assign");
  go.addEventListener(
    "click",
    () =>
      void busy(go, async () => {
        clearError();
        const assignment = {
          name: ticket.name,
          assignee: who.value.trim(),
          priority: Number(priority.value) as Priority,
          etag: ticket.etag,
        };
        await tickets.assignTicket({ ...assignment, requestId: retry.for(assignment) });
        // Done: the assignment shows on the page drawn again, and the reply
        // the agent is writing stays in its box.
        host.sent(section);
        who.value = "";
        priority.value = "0";
        retry.done();
        say(t("assigned"));
        await host.reopen(true);
      }),
  );
  section.append(
    field(t("assignee"), who, "assignee", t("assigneeHint")),
    field(t("colPriority"), priority, "priority"),
    go,
  );
  return section;
}
