/**
 * Finding tickets: by words of the subject or description, requester,
 * category, status and assignee (`SearchTickets`, agents only, over the case
 * index the tickets service keeps from its events). Each result links to its
 * ticket's page.
 */

import { type SearchTicketsRequest, type Ticket, TicketStatus } from "@casemesh/client";

import { tickets } from "./api";
import { statusLabel } from "./ticket";
import { $, busy, clearError, element, locale, say, shortId, t, when } from "./ui";

let categories: { id: string; labels: Record<string, string> }[] = [];
let nextToken = "";

const STATUSES = [
  TicketStatus.NEW,
  TicketStatus.OPEN,
  TicketStatus.PENDING,
  TicketStatus.ON_HOLD,
  TicketStatus.SOLVED,
  TicketStatus.CLOSED,
  TicketStatus.CANCELLED,
];

/** Fills the form's lists (once signed in) in the current language. */
export async function prepareSearch(): Promise<void> {
  if (!categories.length) {
    categories = (await tickets.listTicketCategories({})).categories;
  }
  renderSearchLabels();
}

export function renderSearchLabels(): void {
  const category = $<HTMLSelectElement>("search-category");
  const chosen = category.value;
  category.replaceChildren(
    element("option", t("anyCategory"), { value: "" }),
    ...categories.map((c) => element("option", c.labels[locale] ?? c.id, { value: c.id })),
  );
  category.value = chosen;
  const status = $<HTMLSelectElement>("search-status");
  const state = status.value;
  status.replaceChildren(
    element("option", t("anyStatus"), { value: "" }),
    ...STATUSES.map((s) => element("option", statusLabel(s), { value: String(s) })),
  );
  status.value = state;
}

function result(ticket: Ticket): HTMLElement {
  const item = element("li", "", { "data-ticket": ticket.name });
  item.append(
    element("a", shortId(ticket.name), { href: `#${ticket.name}` }),
    ` ${ticket.subject} · ${statusLabel(ticket.status)} · ${ticket.requester} · `,
    when(ticket.createTime),
  );
  return item;
}

/** The filters the shown results were found with ("More" pages on with them). */
let asked: Omit<SearchTicketsRequest, "$typeName" | "pageToken"> | undefined;

async function search(more: boolean): Promise<void> {
  clearError();
  const value = (id: string) => $<HTMLInputElement>(id).value.trim();
  const status = $<HTMLSelectElement>("search-status").value;
  if (!more || !asked) {
    asked = {
      text: value("search-text"),
      requester: value("search-requester"),
      category: $<HTMLSelectElement>("search-category").value,
      assignee: value("search-assignee"),
      statuses: status ? [Number(status) as TicketStatus] : [],
      pageSize: 25,
    };
  }
  const found = await tickets.searchTickets({ ...asked, pageToken: more ? nextToken : "" });
  const list = $("search-results");
  if (!more) {
    list.replaceChildren();
  }
  list.append(...found.tickets.map(result));
  nextToken = found.nextPageToken;
  $("search-more").hidden = !nextToken;
  const shown = list.childElementCount;
  $("search-count").textContent = t("found", { n: shown });
  say("");
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void busy($("search-form").querySelector("button"), () => search(false));
});
$("search-more").addEventListener(
  "click",
  () => void busy($<HTMLButtonElement>("search-more"), () => search(true)),
);
