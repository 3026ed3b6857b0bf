/**
 * The agents' console: sign in, watch the queue live, take the next case
 * under a lease (renewed while the agent works on it, released on leaving),
 * and work it on its page: a ticket, a report case or a copyright case.
 *
 * Plain DOM, like the self-service page: every call goes through the
 * generated client (`@casemesh/client`).
 */

import { Code, ConnectError, type QueueCase } from "@casemesh/client";

import { claims, currentToken, devSignIn, queue, setToken, transportName } from "./api";
import { openAppeal } from "./appeal";
import {
  anyLeft,
  drawnAs,
  forgetLeft,
  forgetSent,
  keepLeft,
  leftFor,
  restore,
  save,
  savedFor,
  savedRequest,
  sentFrom,
  takeLeft,
  typed,
} from "./drafts";
import { forgetPreviews, preview, shelfNow } from "./evidence";
import { isKey, type Key } from "./i18n";
import { loadMacros } from "./macros";
import {
  forgetSignIn,
  onSigningInAgain,
  providerSignOut,
  renderSessionNotice,
  SettingsUnreachable,
  startSignIn,
} from "./oidc";
import { openReportCase } from "./report";
import { forgetArticle, prepareArticles, renderArticleLabels } from "./articles";
import { forgetSearch, prepareSearch, renderSearchLabels } from "./search";
import { openTicket } from "./ticket";
import { QueueView } from "./queue";
import {
  $,
  agreesToLeave,
  busy,
  type CaseHost,
  clearError,
  fromSession,
  locale,
  onReload,
  onSignedOut,
  reload,
  RetryKey,
  retryWith,
  say,
  setLocale,
  shortId,
  showError,
  t,
} from "./ui";

// -- views ----------------------------------------------------------------------------

const VIEWS = ["sign-in", "queue", "search", "articles", "case"] as const;
type View = (typeof VIEWS)[number];
let view: View = "sign-in";
/** The case whose page is open or opening (a link may open one other than the held case). */
let shownCase = "";

/**
 * Takes down an alert about the case the agent is leaving: its words are not
 * about what they turn to, and its "Reload" would read that instead. The
 * queue's own alert (its list could not be read) stays, as it is about the
 * queue.
 */
function clearCaseError(): void {
  if ($("error").dataset.by !== "queue") clearError();
}

/** Shows one view and moves the focus to its heading, so screen readers follow. */
function show(next: View): void {
  if (view === "case" && next !== "case") {
    // What the agent typed and did not send waits for their return to the case.
    if (shownCase) keepLeft(shownCase, $("case-body"));
    clearCaseError();
  }
  view = next;
  for (const v of VIEWS) {
    $(v).hidden = v !== next;
  }
  $(next).querySelector<HTMLElement>("h1")?.focus();
  if (next !== "case") {
    // The agent left the case: its evidence reads stop, what was read is
    // freed, and "Reload" no longer reads it.
    shownCase = "";
    forgetPreviews();
    onReload(undefined);
  }
  if (next === "queue") {
    history.replaceState(null, "", `${location.pathname}${location.search}`);
  }
}

// -- the lease on the case being worked ---------------------------------------------------

/** Long enough to survive a slow network, short enough that a closed tab frees the case soon. */
const LEASE_SECONDS = 300;
const RENEW_EVERY_MS = 60_000;

interface Held {
  name: string;
  until: Date | undefined;
  state: "held" | "lost" | "ended" | "renewing";
  failures: number;
}

let held: Held | undefined;
let claimCount = 0;
let renewTimer: number | undefined;

function renderLease(): void {
  const lease = $("lease");
  const line = $("lease-text");
  lease.dataset.claims = String(claimCount);
  if (!held) {
    lease.dataset.state = "none";
    lease.dataset.case = "";
    line.textContent = t("leaseNone");
    line.removeAttribute("role");
    return;
  }
  lease.dataset.state = held.state;
  lease.dataset.case = held.name;
  const until = held.until
    ? new Intl.DateTimeFormat(locale, { timeStyle: "medium" }).format(held.until)
    : "";
  if (held.state === "lost") {
    line.textContent = t("leaseLost", { id: shortId(held.name) });
    line.setAttribute("role", "alert");
  } else if (held.state === "ended") {
    line.textContent = t("leaseEnded", { id: shortId(held.name) });
    line.removeAttribute("role");
  } else if (held.state === "renewing") {
    line.textContent = t("leaseRetrying", { id: shortId(held.name), n: held.failures, until });
    line.removeAttribute("role");
  } else {
    line.textContent = t("leaseHeld", { id: shortId(held.name), until });
    line.removeAttribute("role");
  }
}

function stopRenewing(): void {
  if (renewTimer !== undefined) {
    clearInterval(renewTimer);
    renewTimer = undefined;
  }
}

/** Whether the lease ended (the case left the queue) while a call about it was on its way. */
function endedMeanwhile(lease: Held): boolean {
  return lease.state === "ended";
}

async function renew(): Promise<void> {
  const current = held;
  if (!current || current.state === "lost" || current.state === "ended") {
    return;
  }
  try {
    const renewed = await queue.renewClaim({ name: current.name, leaseSeconds: LEASE_SECONDS });
    // The case left the queue while this renewal was on its way: nothing is held.
    if (endedMeanwhile(current)) return;
    current.until = renewed.leaseExpireTime ? timestampDateOf(renewed) : current.until;
    current.state = "held";
    current.failures = 0;
  } catch (err) {
    if (endedMeanwhile(current)) return;
    const code = ConnectError.from(err).code;
    if (code === Code.FailedPrecondition || code === Code.NotFound) {
      current.state = "lost";
      // The timer renews the case held now, which may be another one by
      // the time a renewal of this one is answered.
      if (held === current) stopRenewing();
    } else {
      // The network or the queue is away for now: try again before the lease runs out.
      current.state = "renewing";
      current.failures += 1;
    }
  }
  if (held === current) renderLease();
}

/**
 * Back from signing in again with case `name` held when the agent left: the
 * lease is renewed (it outlasts the trip to the provider), or found lost.
 */
async function resumeHeld(name: string): Promise<void> {
  stopRenewing();
  held = { name, until: undefined, state: "held", failures: 0 };
  renderLease();
  await renew();
  if (held?.name === name && held.state !== "lost") {
    renewTimer = window.setInterval(() => void renew(), RENEW_EVERY_MS);
  }
}

function timestampDateOf(c: QueueCase): Date | undefined {
  const ts = c.leaseExpireTime;
  return ts ? new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6)) : undefined;
}

/** Gives the held case back (leaving it, or taking the next). */
async function releaseHeld(): Promise<void> {
  const current = held;
  stopRenewing();
  held = undefined;
  renderLease();
  await giveBack(current);
}

async function giveBack(current: Held | undefined): Promise<void> {
  if (!current || current.state === "lost" || current.state === "ended") {
    return;
  }
  try {
    await queue.releaseClaim({ name: current.name });
  } catch (err) {
    const code = ConnectError.from(err).code;
    // Already not ours (expired, or the case left the queue): nothing to give back.
    if (code !== Code.FailedPrecondition && code !== Code.NotFound) throw err;
  }
}

/** The case left the claimable queue by the agent's action (solved, waiting on the requester, …). */
function leaseEnded(): void {
  stopRenewing();
  if (held) {
    held.state = "ended";
    renderLease();
  }
}

/**
 * Takes the next case, then gives back the one held (if any): claimed first,
 * so "next" skips a case rather than getting it straight back.
 */
const claiming = new RetryKey();

async function claimNext(): Promise<void> {
  clearError();
  say(t("claiming"));
  let got: QueueCase;
  const asked = { queues: queueView.chosenQueues(), leaseSeconds: LEASE_SECONDS };
  try {
    // A claim whose answer was lost, asked again, gets the case it took
    // rather than a second one (the first would stay held by nobody's view).
    got = await queue.claimNextCase({ ...asked, requestId: claiming.for(asked) });
    claiming.done();
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) {
      await releaseHeld();
      say(t("nothingWaiting"));
      if (view !== "queue") show("queue");
      return;
    }
    throw err;
  }
  // The new case is held (and renewed) before the old one is given back, so a
  // failed release never loses the case just claimed.
  const previous = held;
  stopRenewing();
  claimCount += 1;
  held = { name: got.name, until: timestampDateOf(got), state: "held", failures: 0 };
  $("lease").dataset.holdTime = got.holdTime
    ? new Date(Number(got.holdTime.seconds) * 1000 + got.holdTime.nanos / 1e6).toISOString()
    : "";
  renderLease();
  renewTimer = window.setInterval(() => void renew(), RENEW_EVERY_MS);
  say(t("claimed", { id: shortId(got.name) }));
  // The same case again (its lease had lapsed, and it is still the most
  // urgent): it is the one just claimed, not one to give back.
  if (previous?.name !== got.name) {
    await giveBack(previous).catch(() => undefined); // its lease runs out if this fails
  }
  // The case on screen handed back (its lease had lapsed): what is typed on it stays.
  await openCase(got.name, true);
}

// -- a case's page ----------------------------------------------------------------------

/**
 * Reads a case and draws its page. The case on screen drawn again (after an
 * action, a reload) stays on screen until the new drawing is ready and keeps
 * the evidence already read; with `keepTyped` (a reload after someone else's
 * change, a change of language, the agent's own change) what the agent typed
 * is carried over too, and said to be unless `quietly` (the agent's own
 * change says what it did). A case opened afresh starts from an empty page,
 * its heading too, and gets back what the agent typed on it and left unsent.
 * A case that cannot be read is offered to "Reload".
 */
async function openCase(name: string, keepTyped = false, quietly = false): Promise<void> {
  const body = $("case-body");
  const again = view === "case" && name === shownCase;
  if (!again) {
    // Another case on screen (a link, the next case): what was typed on it
    // and not sent waits for the agent's return to it.
    if (view === "case" && shownCase) keepLeft(shownCase, body);
    if (view === "case") clearCaseError();
    forgetPreviews();
    body.replaceChildren();
    $("case-heading").textContent = "";
  }
  shownCase = name;
  // The case's own evidence shelf: a new one each time the case is opened afresh.
  const shelf = shelfNow();
  // Whether this page is still the one on screen: an action answered after
  // the agent went elsewhere (perhaps back to this case, opened afresh)
  // leaves what is on screen now alone.
  const mine = () => shownCase === name && shelfNow() === shelf;
  onReload(() => openCase(name, true));
  let kept: Key | undefined;
  const host: CaseHost = {
    draw(page: HTMLElement) {
      if (!mine()) return;
      // Read as the new drawing replaces the old, so nothing typed during the read is lost.
      const left = takeLeft(name);
      // Opened afresh (after a reload too): what the agent last typed on it, as saved.
      const saved = again ? new Map<string, string | boolean>() : savedFor(claims().sub, name);
      const typedNow = new Map([...saved, ...left, ...(keepTyped && again ? typed(body) : [])]);
      body.replaceChildren(page);
      drawnAs(body);
      if (typedNow.size) {
        const placed = restore(body, typedNow);
        kept = !placed
          ? "draftsNotKept"
          : left.size || saved.size
            ? "draftRestored"
            : quietly
              ? undefined
              : "draftsKept";
      }
      save(claims().sub, name, body);
    },
    reopen: async (keep = false) => {
      if (mine()) await openCase(name, keep, true);
    },
    sent(what: HTMLElement) {
      forgetSent(name, what);
      if (shownCase === name) sentFrom(body, what);
    },
    retryKey: (action: string) => new RetryKey(savedRequest(claims().sub, name, action)),
    done(message: string) {
      if (held?.name === name) leaseEnded();
      // What was typed on it and not sent waits for the agent's return to it,
      // as when they leave any case.
      if (mine()) show("queue");
      say(message);
    },
    ended(message: string) {
      if (held?.name === name) leaseEnded();
      say(message);
    },
    heading(text: string) {
      if (!mine()) return; // as in draw
      $("case-heading").textContent = text;
    },
    preview: (evidence: string) => preview(evidence, shelf),
    holds(which: string) {
      return held?.name === which && held.state !== "lost";
    },
  };
  const open = name.startsWith("tickets/")
    ? openTicket
    : name.startsWith("report-cases/")
      ? openReportCase
      : name.startsWith("appeals/")
        ? openAppeal
        : undefined;
  if (!open) {
    throw new ConnectError(`${name} is not a case this console shows`, Code.InvalidArgument);
  }
  try {
    await open(name, host);
  } catch (err) {
    // Whatever kept the case from being read (the network, the server), the
    // agent can read it again from where they are.
    throw shownCase === name ? retryWith(err, () => openCase(name, true)) : err;
  }
  if (shownCase !== name) return;
  renderLease();
  show("case");
  history.replaceState(null, "", `${location.pathname}${location.search}#${name}`);
  if (kept !== undefined) say(t(kept));
}

// -- the queue ------------------------------------------------------------------------------

const queueView = new QueueView();

// The live queue hears of a change to the held case before the next renewal
// would. A case that left the claimable queue (solved, decided, waiting on the
// requester) ends the lease: there is nothing left to hold. One that no longer
// shows the agent holding it (released, taken by someone else) has the lease
// checked at once: RenewClaim keeps a lease still held, and says when it is not.
queueView.onChange((change, c) => {
  if (held?.name !== c.name) return;
  if (change === "REMOVED" || c.waiting) {
    leaseEnded();
  } else if (c.holder !== claims().sub) {
    void renew();
  }
});

/**
 * Whether to take the next case: asked first when that gives back the case
 * on screen with something typed on it and not sent (what was typed is kept
 * for a return to the case, but the case goes back to the queue).
 */
async function mayGiveUpShown(): Promise<boolean> {
  const holding = held?.name === shownCase && (held.state === "held" || held.state === "renewing");
  if (view !== "case" || !holding || !typed($("case-body")).size) return true;
  return agreesToLeave($<HTMLDialogElement>("leave-dialog"));
}

function nextCase(control: HTMLButtonElement): void {
  void busy(control, async () => {
    if (await mayGiveUpShown()) await claimNext();
  });
}

$("next-case").addEventListener("click", () => nextCase($<HTMLButtonElement>("next-case")));
$("next-case-2").addEventListener("click", () => nextCase($<HTMLButtonElement>("next-case-2")));
$("back-to-queue").addEventListener(
  "click",
  () =>
    void busy($<HTMLButtonElement>("back-to-queue"), async () => {
      await releaseHeld();
      show("queue");
    }),
);
$("open-search").addEventListener(
  "click",
  () =>
    void busy($<HTMLButtonElement>("open-search"), async () => {
      await prepareSearch();
      show("search");
    }),
);
$("search-back").addEventListener("click", () => show("queue"));
$("open-articles").addEventListener(
  "click",
  () =>
    void busy($<HTMLButtonElement>("open-articles"), async () => {
      await prepareArticles();
      show("articles");
    }),
);
$("articles-back").addEventListener("click", () => show("queue"));
$("error-reload").addEventListener(
  "click",
  () => void busy($<HTMLButtonElement>("error-reload"), reload),
);

// Leaving the page gives the case back at once rather than when its lease runs
// out (but not for a trip to the identity provider to sign in again: the agent
// comes back to it). The generated client cannot send a request that outlives
// the page, so this one call is a plain keepalive fetch in the Connect
// protocol's JSON form.
let leavingToSignIn = false;
addEventListener("pageshow", (e) => {
  const wasLeaving = leavingToSignIn;
  leavingToSignIn = false; // back from the history cache: leaving again gives it back
  // Kept for a return from the provider that did not come, with the draft
  // and the case still on the page: not to be given back at a later sign-in.
  // (Kept as a refused token signed the agent out: still needed.)
  if (e.persisted && wasLeaving) sessionStorage.removeItem(INTERRUPTED_KEY);
});
// What the agent types on a case is saved as they type (a reload gives it
// back); leaving the page with something typed and not sent asks first, as
// a closed tab takes it with it. Not on a trip to sign in again: kept for
// the return (keepInterrupted).
for (const typing of ["input", "change"]) {
  $("case-body").addEventListener(typing, () => {
    if (view === "case" && shownCase) save(claims().sub, shownCase, $("case-body"));
  });
}
addEventListener("beforeunload", (e) => {
  if (!currentToken() || leavingToSignIn) return;
  if ((view === "case" && typed($("case-body")).size) || anyLeft()) e.preventDefault();
});
addEventListener("pagehide", () => {
  if (held && held.state === "held" && !leavingToSignIn) {
    void fetch(new URL("/casemesh.v1.CaseQueueService/ReleaseClaim", location.origin), {
      method: "POST",
      keepalive: true,
      headers: {
        "Content-Type": "application/json",
        Authorization: `Bearer ${currentToken() ?? ""}`,
      },
      body: JSON.stringify({ name: held.name }),
    });
  }
});

// -- keyboard ---------------------------------------------------------------------------

function typing(target: EventTarget | null): boolean {
  return (
    target instanceof HTMLInputElement ||
    target instanceof HTMLTextAreaElement ||
    target instanceof HTMLSelectElement ||
    (target instanceof HTMLElement && target.isContentEditable)
  );
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target) || !currentToken()) {
    return;
  }
  if (document.querySelector("dialog[open]")) {
    return;
  }
  if (e.key === "?") {
    e.preventDefault();
    $<HTMLDialogElement>("shortcuts-dialog").showModal();
  } else if (e.key === "n" && view !== "sign-in") {
    e.preventDefault();
    nextCase($<HTMLButtonElement>(view === "case" ? "next-case-2" : "next-case"));
  } else if (e.key === "r" && view === "case") {
    const reply = document.getElementById("reply");
    if (reply) {
      e.preventDefault();
      reply.focus();
    }
  } else if (e.key === "s" && view === "case") {
    const solve = document.getElementById("solve");
    if (solve instanceof HTMLButtonElement) {
      e.preventDefault();
      solve.click();
    }
  }
});

$("show-shortcuts").addEventListener("click", () =>
  $<HTMLDialogElement>("shortcuts-dialog").showModal(),
);

// -- signing in -----------------------------------------------------------------------------

function renderSignedIn(): void {
  const who = currentToken() ? claims().sub : "";
  $("signed-in-as").textContent = who ? t("signedInAs", { name: who }) : "";
  $("signed-in-as").hidden = !who;
  $("sign-out").hidden = !currentToken();
  // Articles are edited by admins only (the API refuses anyone else too).
  $("open-articles").hidden = !(currentToken() && claims().roles.includes("admin"));
}

// The case the agent had typed on when their sign-in ran out, opened again
// once they are signed in again (what they typed on it is saved as they
// type, and given back as it is drawn), and (when they chose to sign in
// again) the case they held, held again. In this tab's session storage only;
// signing out on purpose keeps nothing.
const INTERRUPTED_KEY = "casemesh.console.interrupted";
type Interrupted = { agent: string; name: string; held?: string };

/** Keeps the shown case if something is typed on it; with `keepHeld`, the held case too. */
function keepInterrupted(keepHeld = false): void {
  const typing = view === "case" && shownCase !== "" && typed($("case-body")).size > 0;
  const holding = keepHeld && held && held.state !== "lost" && held.state !== "ended";
  if (typing || holding) {
    const kept: Interrupted = { agent: claims().sub, name: shownCase };
    if (holding) kept.held = held?.name;
    sessionStorage.setItem(INTERRUPTED_KEY, JSON.stringify(kept));
  }
}

/** Where this agent was when their sign-in ran out, taken out of storage:
 * theirs only (another agent signing in on this tab is not taken there). */
function resumeInterrupted(): Interrupted | undefined {
  const kept = fromSession<Interrupted | null>(INTERRUPTED_KEY);
  sessionStorage.removeItem(INTERRUPTED_KEY);
  return kept?.agent === claims().sub ? kept : undefined;
}

/** Who signed in last on this page (what the views beside the queue show is theirs). */
let viewsBy = "";

/**
 * Empties the views beside the queue: the tickets the agent searched for
 * (with their requesters' addresses and phones) and the article being
 * edited are not for whoever signs in next on this page.
 */
function forgetViews(): void {
  forgetSearch();
  forgetArticle();
}

function signOut(): void {
  void releaseHeld().catch(() => undefined);
  queueView.stop();
  setToken(undefined);
  forgetSignIn();
  // A question asked of the agent (leave a reply unsent?) has no one to answer it.
  for (const open of document.querySelectorAll<HTMLDialogElement>("dialog[open]")) open.close();
  renderSignedIn();
  show("sign-in");
}

// The sign-in ran out: what the agent typed on other cases stays, theirs
// again once they sign in again (`leftFor`: nobody else's).
onSignedOut(() => {
  keepInterrupted();
  signOut();
});
// Signing in again from the session notice leaves the page for the provider:
// what was typed is kept, and the held case stays held for the agent's return.
onSigningInAgain(() => {
  keepInterrupted(true);
  leavingToSignIn = true;
});
$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(INTERRUPTED_KEY);
  // The identity provider's session ends too, once the held case is given back.
  const provider = providerSignOut();
  const givenBack = releaseHeld().catch(() => undefined);
  signOut();
  // Whoever signs in next on this page gets nothing typed or found by this agent.
  forgetLeft();
  forgetViews();
  if (provider) void givenBack.then(() => location.assign(provider));
});

$("sign-in-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void busy($("sign-in-form").querySelector("button"), async () => {
    say(t("signingIn"));
    const roles = $<HTMLInputElement>("admin-role").checked ? ["agent", "admin"] : ["agent"];
    setToken(await devSignIn($<HTMLInputElement>("user-name").value.trim(), roles));
    await start();
  });
});

// -- language and start -----------------------------------------------------------------------

function applyLocale(): void {
  document.documentElement.lang = locale;
  document.title = t("title");
  for (const el of document.querySelectorAll<HTMLElement>("[data-i18n]")) {
    const key = el.dataset.i18n ?? "";
    if (isKey(key)) {
      el.textContent = t(key);
    }
  }
  // Names that are not text on the page (a region's label).
  for (const el of document.querySelectorAll<HTMLElement>("[data-i18n-label]")) {
    const key = el.dataset.i18nLabel ?? "";
    if (isKey(key)) {
      el.setAttribute("aria-label", t(key));
    }
  }
  $<HTMLSelectElement>("language").value = locale;
  $("transport-note").textContent = t("transport", { transport: transportName });
  renderSignedIn();
  renderSessionNotice();
  renderLease();
  queueView.renderLabels();
  renderSearchLabels();
  renderArticleLabels();
}

$("language").addEventListener("change", () => {
  setLocale($<HTMLSelectElement>("language").value === "en" ? "en" : "zh-CN");
  applyLocale();
  const shown = /^#((tickets|report-cases|appeals)\/[0-9a-f-]{36})$/.exec(location.hash)?.[1];
  if (view === "case" && shown) {
    void busy(null, () => openCase(shown, true));
  }
});

// A link to a case (an appeal from its report case's page) opens it to view:
// the case the link named, even if a page that finished opening in between
// has put its own name back in the address.
addEventListener("hashchange", (e) => {
  const named = /^#((tickets|report-cases|appeals)\/[0-9a-f-]{36})$/.exec(
    new URL(e.newURL).hash,
  )?.[1];
  if (named && currentToken()) {
    void busy(null, () => openCase(named));
  }
});

/** Signed in: the queue, live; or the case the address names. */
async function start(): Promise<void> {
  leftFor(claims().sub);
  // Signed in as someone else after a sign-in ran out: what the last agent
  // found is not theirs to see either.
  if (claims().sub !== viewsBy) forgetViews();
  viewsBy = claims().sub;
  renderSignedIn();
  // The gateway lets an admin do what an agent does.
  const roles = claims().roles;
  if (!roles.includes("agent") && !roles.includes("admin")) {
    showError(new ConnectError(t("needsAgent"), Code.PermissionDenied));
  }
  await loadMacros();
  queueView.start();
  say("");
  const resumed = resumeInterrupted();
  if (resumed?.held) await resumeHeld(resumed.held);
  const named =
    /^#((tickets|report-cases|appeals)\/[0-9a-f-]{36})$/.exec(location.hash)?.[1] ?? resumed?.name;
  if (named) {
    await openCase(named);
  } else {
    show("queue");
  }
}

/**
 * Signed in already, or back from the identity provider: the queue (or the
 * case linked). Settings the server could not be reached for are read again
 * by "Reload".
 */
async function begin(): Promise<void> {
  let signedIn: boolean;
  try {
    signedIn = await startSignIn().finally(renderSignedIn);
  } catch (err) {
    throw err instanceof SettingsUnreachable ? retryWith(err, begin) : err;
  }
  onReload(undefined);
  if (signedIn) await start();
}

applyLocale();
show("sign-in");
void busy(null, begin);
