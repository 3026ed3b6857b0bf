/**
 * Finding tickets: by words of the subject or description, requester,
 * category, status and assignee (`SearchTickets`, agents only, over the case
 * index the tickets service keeps from its events). Each result links to its
 * ticket's page.
 */

import {
  type ListTicketsResponse,
  type SearchTicketsRequest,
  type Ticket,
  TicketStatus,
} from "@casemesh/client";

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

/**
 * Which search the shown results belong to: each new search takes the next
 * number, and an answer for an older one (a "More" sent before it, a search
 * it overtook) is dropped, so it neither adds the old filter's tickets nor
 * leaves the old filter's cursor for the next "More".
 */
let generation = 0;
/** Searches under way, and whether a "More" is: "More" waits for both. */
let searching = 0;
let paging = false;

/**
 * Forgets what was searched and found (on sign-out: the next agent on this
 * tab sees none of it, and an answer still on its way is dropped).
 */
export function forgetSearch(): void {
  generation += 1;
  asked = undefined;
  nextToken = "";
  $<HTMLFormElement>("search-form").reset();
  $("search-results").replaceChildren();
  $("search-count").textContent = "";
  renderMore();
}

function renderMore(): void {
  const more = $<HTMLButtonElement>("search-more");
  more.hidden = !nextToken;
  more.disabled = searching > 0 || paging;
}

async function search(more: boolean): Promise<void> {
  clearError();
  const value = (id: string) => $<HTMLInputElement>(id).value.trim();
  const status = $<HTMLSelectElement>("search-status").value;
  if (!more) {
    generation += 1;
  }
  const mine = generation;
  // "More" pages on with the filters the shown results were found with; a
  // new search's filters are theirs once it is answered.
  const filters =
    more && asked
      ? asked
      : {
          text: value("search-text"),
          requester: value("search-requester"),
          category: $<HTMLSelectElement>("search-category").value,
          assignee: value("search-assignee"),
          statuses: status ? [Number(status) as TicketStatus] : [],
          pageSize: 25,
        };
  let found: ListTicketsResponse;
  try {
    found = await tickets.searchTickets({ ...filters, pageToken: more ? nextToken : "" });
  } catch (err) {
    if (mine !== generation) return; // an older search's failure: the newer one speaks
    throw err;
  }
  if (mine !== generation) {
    return;
  }
  asked = filters;
  const list = $("search-results");
  if (!more) {
    list.replaceChildren();
  }
  // A ticket the index moved between pages (changed meanwhile) is listed once.
  const listed = new Set(
    [...list.querySelectorAll<HTMLElement>("li[data-ticket]")].map((li) => li.dataset.ticket),
  );
  const added = found.tickets.filter((ticket) => !listed.has(ticket.name)).map(result);
  list.append(...added);
  nextToken = found.nextPageToken;
  renderMore();
  const shown = list.childElementCount;
  $("search-count").textContent = t("found", { n: shown });
  say("");
  if (more) {
    // On to the first of the new ones ("More" may have gone with the last
    // page); to the count when the page added none.
    (added[0]?.querySelector("a") ?? $("search-count")).focus();
  }
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void busy($("search-form").querySelector("button"), async () => {
    searching += 1;
    renderMore();
    try {
      await search(false);
    } finally {
      searching -= 1;
      renderMore();
    }
  });
});
$("search-more").addEventListener("click", () => {
  if (searching > 0 || paging) {
    return;
  }
  paging = true;
  renderMore();
  void busy(null, () => search(true)).finally(() => {
    paging = false;
    renderMore();
  });
});
