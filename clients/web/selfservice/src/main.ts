/**
 * The self-service reference page: sign in, search the help centre or follow a
 * guided flow, say whether it helped, and open a ticket (with a screenshot)
 * when it did not; then follow the ticket's status and history in "my
 * tickets", answer the agent, and rate the outcome.
 *
 * Plain DOM on purpose: every call goes through the generated client
 * (`@casemesh/client`), so a team with its own framework can lift the calls as
 * they are.
 */

import {
  type Article,
  BlobGatherer,
  Channel,
  Code,
  ConnectError,
  createClient,
  devSignIn,
  errorReason,
  fieldViolations,
  type Flow,
  type FlowStep,
  HelpCenterService,
  PrivacyService,
  RetryKey,
  connectTransport,
  errorMessage,
  grpcWebTransport,
  type Ticket,
  type TicketCategory,
  type TicketEvent,
  TicketService,
  TicketStatus,
  shortId,
  ticketHistory,
  timestampDate,
  unreachable,
  uploadEvidence,
  violationText,
} from "@casemesh/client";
import { element } from "@casemesh/client/page";

import { type Key, type Locale, initialLocale, isKey, text, textOr } from "./i18n";

// -- set-up ----------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const useGrpcWeb = params.get("transport") === "grpc-web";
const api = location.origin;

const TOKEN_KEY = "casemesh.token";
const LOCALE_KEY = "casemesh.locale";

let token: string | undefined = sessionStorage.getItem(TOKEN_KEY) ?? undefined;

/**
 * Production: the app shell hands in the platform's token in the fragment
 * (#token=…), which browsers send to no server, not even as a Referer: when
 * it opens the page, and again (a hashchange, no reload) when the one it
 * handed in has run out. It leaves the address bar at once, so it is not
 * bookmarked or shared. Whether one was handed in.
 */
function takeHandedToken(keepHash = ""): boolean {
  const handed = new URLSearchParams(location.hash.slice(1)).get("token");
  if (handed === null) {
    return false;
  }
  history.replaceState(null, "", `${location.pathname}${location.search}${keepHash}`);
  // One that names nobody is no sign-in: the page stays as it was.
  if (!subjectOf(handed)) {
    return false;
  }
  token = handed;
  sessionStorage.setItem(TOKEN_KEY, handed);
  return true;
}
takeHandedToken();
const currentToken = () => token;

// The gateway's development sign-in answers pages on this machine only; on
// any other host, signing in is the app's.
const DEV_SIGN_IN = ["localhost", "127.0.0.1", "[::1]"].includes(location.hostname);

/**
 * The calls made for the person signed in now. Signing out, or another
 * person signing in, ends them (`endCalls`): a call still on its way is
 * stopped, and an answer that comes all the same is dropped, for what it
 * holds (a ticket, a copy of someone's data) is not for whoever uses the page
 * next.
 */
let calls = new AbortController();

/** Why a call failed whose sign-in ended before it was answered: said to nobody. */
const SIGN_IN_ENDED = new Error("the sign-in this call was made for has ended");

function signInEnded(): ConnectError {
  return new ConnectError(
    SIGN_IN_ENDED.message,
    Code.Canceled,
    undefined,
    undefined,
    SIGN_IN_ENDED,
  );
}

/** Whether `err` is the end of a call whose sign-in ended (nothing to show or keep). */
function ended(err: unknown): boolean {
  // (Not a subclass: ConnectError's `instanceof` takes any ConnectError for one.)
  return err instanceof ConnectError && err.cause === SIGN_IN_ENDED;
}

function endCalls(): void {
  calls.abort();
  calls = new AbortController();
}

/** Who a call was made for (their sign-in's calls, and their name). */
interface CallFor {
  calls: AbortController;
  who: string;
}

function callFor(): CallFor {
  return { calls, who: signedInAs() };
}

/** Throws `signInEnded()` once the sign-in `made` was made for has ended. */
function stillFor(made: CallFor): void {
  if (made.calls !== calls || made.who !== signedInAs()) {
    throw signInEnded();
  }
}

/** A call's answer, or its failure, if its sign-in has not ended meanwhile. */
async function answered<T>(answer: Promise<T>, made: CallFor): Promise<T> {
  let got: T;
  try {
    got = await answer;
  } catch (err) {
    stillFor(made);
    throw err;
  }
  stillFor(made);
  return got;
}

/** A streamed answer, piece by piece, while its sign-in has not ended. */
async function* streamed<T>(pieces: AsyncIterable<T>, made: CallFor): AsyncGenerator<T> {
  try {
    for await (const piece of pieces) {
      stillFor(made);
      yield piece;
    }
  } catch (err) {
    stillFor(made);
    throw err;
  }
  stillFor(made);
}

/**
 * `client`, each of its calls made for the person signed in now: stopped when
 * their sign-in ends, its answer dropped if it comes after (see `calls`).
 */
function forTheSignedIn<C extends object>(client: C): C {
  return new Proxy(client, {
    get(target, key) {
      const method: unknown = Reflect.get(target, key);
      if (typeof method !== "function") {
        return method;
      }
      return (request: unknown, options?: object) => {
        const made = callFor();
        const call: unknown = method.call(target, request, {
          ...options,
          signal: made.calls.signal,
        });
        return typeof call === "object" && call !== null && Symbol.asyncIterator in call
          ? streamed(call as AsyncIterable<unknown>, made)
          : answered(call as Promise<unknown>, made);
      };
    },
  });
}

const transport = useGrpcWeb
  ? grpcWebTransport(api, currentToken, () => locale)
  : connectTransport(api, currentToken, () => locale);
const tickets = forTheSignedIn(createClient(TicketService, transport));
const help = forTheSignedIn(createClient(HelpCenterService, transport));
const privacy = forTheSignedIn(createClient(PrivacyService, transport));

let locale: Locale = initialLocale(
  localStorage.getItem(LOCALE_KEY),
  navigator.languages.length ? navigator.languages : [navigator.language],
);
const t = (key: Key, values?: Record<string, string | number>) => text(locale, key, values);

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) {
    throw new Error(`#${id} is missing from index.html`);
  }
  return found as T;
}

// -- views, status and errors -------------------------------------------------------

const VIEWS = [
  "sign-in",
  "help",
  "article",
  "flow",
  "ticket-form-view",
  "tickets",
  "ticket",
] as const;
type View = (typeof VIEWS)[number];

/** Shows one view and moves the focus to its heading, so screen readers follow. */
/** How many times the page moved to a view: a read that began before a move does not undo it. */
let moves = 0;

function show(view: View): void {
  moves += 1;
  for (const v of VIEWS) {
    $(v).hidden = v !== view;
  }
  clearError();
  $(view).querySelector<HTMLElement>("h1")?.focus();
}

function say(message: string): void {
  $("status").textContent = message;
}

/** A refusal the page explains in its own words (in the alert, like an error). */
function warn(message: string): void {
  clearError();
  $("error-message").textContent = message;
  $("error").hidden = false;
  say("");
}

function clearError(): void {
  $("error").hidden = true;
  $("error-message").textContent = "";
  $("error-list").replaceChildren();
  for (const shown of document.querySelectorAll<HTMLElement>(".field-error")) {
    shown.hidden = true;
    shown.textContent = "";
  }
  for (const invalid of document.querySelectorAll("[aria-invalid]")) {
    invalid.removeAttribute("aria-invalid");
  }
}

/** Where a field named by the server is shown (its input), if the view has it. */
type Placer = (field: string) => HTMLElement | undefined;

/**
 * Shows a failed call: the server's message, and for `invalid_argument` each
 * field violation next to its field (the rest listed with the message).
 * `pressed`: the failure answers what the user did on the view they are on
 * (else it takes no focus from what they are doing now).
 */
function showError(err: unknown, place: Placer = () => undefined, pressed = true): void {
  if (ended(err)) {
    return; // for someone no longer signed in
  }
  clearError();
  const error = ConnectError.from(err);
  if (error.code === Code.Unauthenticated && token) {
    // The ticket form stays as it is, to be given back to the same person.
    interrupted = $("ticket-form-view").hidden ? undefined : subjectOf(token);
    signOut();
    $("error-message").textContent = t("signInAgain");
    $("error").hidden = false;
    return;
  }
  let first: HTMLElement | undefined;
  for (const violation of fieldViolations(error)) {
    const input = place(violation.field);
    if (input) {
      const note = $(`${input.id}-error`);
      note.textContent = note.textContent
        ? `${note.textContent} ${violationText(violation)}`
        : violationText(violation);
      note.hidden = false;
      input.setAttribute("aria-invalid", "true");
      first ??= input;
    } else {
      $("error-list").append(element("li", `${violation.field}: ${violationText(violation)}`));
    }
  }
  $("error-message").textContent = first
    ? t("fixFields")
    : unreachable(err)
      ? t("unreachable")
      : `${t("errorPrefix")}${errorMessage(error)}`;
  $("error").hidden = false;
  say("");
  // The first field named; else the alert itself, brought into view: on a
  // phone it sits far above the button that was pressed.
  const named = first instanceof HTMLFieldSetElement ? first.querySelector("input") : first;
  if (named) {
    named.focus();
  } else if (pressed) {
    $("error").focus();
  }
}

/** A field the page refuses itself, shown as the gateway's refusals are: beside it, under the alert. */
function refuse(input: HTMLElement, message: string): void {
  clearError();
  const note = $(`${input.id}-error`);
  note.textContent = message;
  note.hidden = false;
  input.setAttribute("aria-invalid", "true");
  $("error-message").textContent = t("fixFields");
  $("error").hidden = false;
  say("");
  input.focus();
}

/** Runs a call for a button or form, refusing a second press while it runs. */
async function busy(control: HTMLButtonElement | null, work: () => Promise<void>, place?: Placer) {
  if (control?.disabled) {
    return;
  }
  if (control) control.disabled = true;
  try {
    await work();
  } catch (err) {
    // A button still shown: the user is where they pressed it.
    showError(err, place, control !== null && control.getClientRects().length > 0);
  } finally {
    if (control) control.disabled = false;
  }
}

function listItem(...content: Node[]): HTMLLIElement {
  const item = element("li");
  item.append(...content);
  return item;
}

function when(time: Date): HTMLTimeElement {
  const formatted = new Intl.DateTimeFormat(locale, {
    dateStyle: "medium",
    timeStyle: "short",
  }).format(time);
  return element("time", formatted, { datetime: time.toISOString() });
}

function paragraphs(container: HTMLElement, body: string): void {
  container.replaceChildren(
    ...body
      .split(/\n{2,}/)
      .filter((p) => p.trim())
      .map((p) => element("p", p.trim())),
  );
}

// -- signing in ----------------------------------------------------------------------

/** The `sub` of a JWT, for "signed in as"; the page never trusts it for anything. */
function subjectOf(jwt: string): string {
  try {
    const part = jwt.split(".")[1] ?? "";
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const claims: unknown = JSON.parse(
      new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))),
    );
    return typeof claims === "object" && claims && "sub" in claims ? String(claims.sub) : "";
  } catch {
    return "";
  }
}

/** Who is signed in now ("": nobody). */
function signedInAs(): string {
  return token ? subjectOf(token) : "";
}

function renderSignedIn(): void {
  const who = signedInAs();
  $("signed-in-as").textContent = who ? t("signedInAs", { name: who }) : "";
  $("signed-in-as").hidden = !who;
  $("sign-out").hidden = !token;
  $("download-data").hidden = !token;
}

/** Whose ticket form was open when their sign-in ran out (undefined: none). */
let interrupted: string | undefined;

/** Signed in again as the one whose sign-in ran out mid-form: the form, as they left it. */
function resumeForm(): void {
  if (interrupted && token && interrupted === subjectOf(token)) {
    showTicketForm();
    say(t("formKept"));
  }
  interrupted = undefined;
}

/** Who was signed in last ("": nobody yet, or they signed out themselves). */
let signedOutAs = "";

/** Signed out, by the button or because the sign-in ran out: their calls
 * stop (`endCalls`), and what they were doing stays for them (a reply typed,
 * the ticket shown), until someone else signs in (`forget`). */
function signOut(): void {
  signedOutAs = signedInAs();
  token = undefined;
  sessionStorage.removeItem(TOKEN_KEY);
  endCalls();
  renderSignedIn();
  say("");
  show("sign-in");
}

/** Nothing of the last person's stays in the page for whoever signs in next. */
function forget(): void {
  endCalls();
  say("");
  shown = undefined;
  mine = undefined;
  interrupted = undefined;
  for (const shownOfTheirs of [
    "ticket-list",
    "ticket-history",
    "ticket-number",
    "ticket-subject",
    "ticket-description",
    "ticket-status",
    "ticket-category",
    "ticket-updates",
  ]) {
    $(shownOfTheirs).replaceChildren();
  }
  $<HTMLFormElement>("reply-form").reset();
  $<HTMLFormElement>("rating-form").reset();
  answering.clear();
  startOver();
  // Their ticket form, and a submit of theirs left unanswered (kept in
  // storage for them alone: see restorePending).
  $<HTMLFormElement>("ticket-form").reset();
  formWrittenIn = undefined;
  sending = false; // its submit stopped with their calls
  requestId = "";
  unanswered = [];
  notSolvedIn = "";
  uploaded = undefined;
  refill = undefined;
  // Their ticket's address is not the next person's to open.
  window.history.replaceState(null, "", `${location.pathname}${location.search}`);
}

/** Signed in (again), as `before` was or as someone else: their page, or a
 * fresh one (`before`: who was signed in, or last signed out). */
async function signedIn(before: string): Promise<void> {
  if (!token || subjectOf(token) !== before) {
    forget();
  }
  await start();
  resumeForm();
}

$("sign-in-form").hidden = !DEV_SIGN_IN;
$("sign-in-note").hidden = !DEV_SIGN_IN;
$("sign-in-from-app").hidden = DEV_SIGN_IN;

$("sign-in-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const button = $("sign-in-form").querySelector("button");
  void busy(
    button,
    async () => {
      say(t("signingIn"));
      token = await devSignIn(api, $<HTMLInputElement>("user-name").value.trim());
      sessionStorage.setItem(TOKEN_KEY, token);
      await signedIn(signedOutAs);
    },
    (field) => (field === "subject" ? $("user-name") : undefined),
  );
});

$("sign-out").addEventListener("click", () => {
  // Signing out on purpose keeps nothing, not even a ticket left unanswered.
  sessionStorage.removeItem(PENDING_KEY);
  signOut();
  forget();
  signedOutAs = "";
});

// -- a copy of one's data ------------------------------------------------------------

/**
 * Downloads the zip `PrivacyService.ExportPerson` streams: every case of the
 * signed-in person (JSON) and the files they uploaded.
 */
async function downloadData(): Promise<void> {
  say(t("preparingData"));
  // Gathered as a few large Blobs: the archive (the person's files in it)
  // may run to hundreds of megabytes, more than a phone's tab can hold twice.
  const archive = new BlobGatherer();
  let fileName = "casemesh-export.zip";
  const missing: string[] = [];
  for await (const piece of privacy.exportPerson({})) {
    fileName = piece.fileName || fileName;
    archive.add(piece.data);
    missing.push(...piece.missingFiles);
  }
  const url = URL.createObjectURL(archive.blob("application/zip"));
  const link = document.createElement("a");
  link.href = url;
  link.download = fileName;
  link.click();
  // The download has its own copy once started; the page lets go of it.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  say(
    missing.length
      ? t("dataDownloadedMissing", { name: fileName, count: missing.length })
      : t("dataDownloaded", { name: fileName }),
  );
}

$("download-data").addEventListener("click", () => {
  void busy($<HTMLButtonElement>("download-data"), downloadData);
});

// -- the help centre: search, articles, flows ------------------------------------------------

/** What the user did in this help session: the ticket draft is made of it. */
function newHelpSession() {
  return {
    session: "",
    searches: [] as string[],
    read: [] as string[],
    flow: undefined as Flow | undefined,
    path: [] as string[],
    /** The ticket category the help centre points to (the article's or the flow's). */
    category: "",
  };
}

// After an answer to "did this solve it?" (or a ticket), a new session starts.
let tried = newHelpSession();

/**
 * Begins a new help session. The last search's results go with the old one:
 * an article opened from them would belong to no session, and its "did this
 * solve it?" could not be answered.
 */
function startOver(): void {
  tried = newHelpSession();
  dropDraft(); // the next ticket form starts blank (see openTicketForm)
  $("result-list").replaceChildren();
  $("results").hidden = true;
  $<HTMLInputElement>("query").value = "";
}

async function loadFlows(): Promise<void> {
  const { flows } = await help.listFlows({ locale });
  $("flow-list").replaceChildren(
    ...flows.map((flow) => {
      const button = element("button", flow.title, { type: "button" });
      button.addEventListener("click", () => void busy(button, () => startFlow(flow)));
      return listItem(button);
    }),
  );
}

/** The most characters a search may have (`SearchArticlesRequest.query`). */
const QUERY_MOST = 200;

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const query = $<HTMLInputElement>("query").value.trim();
  if (!query) {
    return;
  }
  // Counted in characters (code points), as the service counts them, as the subject is.
  if ([...query].length > QUERY_MOST) {
    refuse($("query"), t("tooLong", { n: QUERY_MOST }));
    return;
  }
  void busy(
    $("search-form").querySelector("button"),
    async () => {
      clearError();
      say(t("searching"));
      const found = await help.searchArticles({ query, locale, session: tried.session });
      tried.session = found.session;
      tried.searches.push(query);
      const list = found.results.flatMap(({ article, snippet }) => {
        if (!article) {
          return [];
        }
        const open = element("button", article.title, { type: "button", class: "result-title" });
        open.addEventListener("click", () => void busy(open, () => openArticle(article.name)));
        return listItem(
          open,
          element("p", snippet, { class: "snippet" }),
          element("p", article.categoryLabel, { class: "meta" }),
        );
      });
      $("result-list").replaceChildren(...list);
      $("results").hidden = !list.length;
      say(list.length ? t("resultCount", { count: list.length }) : t("noResults"));
    },
    (field) => (field === "query" ? $("query") : undefined),
  );
});

function askSolved(where: "article-solved" | "flow-solved"): void {
  $(where).append($("solved"));
  $("solved").hidden = false;
  $("solved-buttons").hidden = false;
  $("solved-thanks").textContent = "";
}

function renderArticle(article: Article, title: HTMLElement, body: HTMLElement): void {
  title.textContent = article.title;
  paragraphs(body, article.body);
}

async function openArticle(name: string): Promise<void> {
  const article = await help.getArticle({ name, locale, session: tried.session });
  tried.read.push(article.title);
  tried.category = article.category;
  renderArticle(article, $("article-title"), $("article-body"));
  const meta = $("article-meta");
  meta.replaceChildren(`${t("category")}: ${article.categoryLabel}`);
  if (article.updateTime) {
    meta.append(" · ", t("updated"), " ", when(timestampDate(article.updateTime)));
  }
  askSolved("article-solved");
  show("article");
}

async function startFlow(flow: Flow): Promise<void> {
  const step = await help.startFlow({ flow: flow.name, locale, session: tried.session });
  tried.flow = flow;
  tried.path = [];
  tried.category = flow.category;
  $("flow-path").replaceChildren();
  renderStep(step);
  show("flow");
}

function renderStep(step: FlowStep): void {
  tried.session = step.session;
  $("flow-title").textContent = step.flow?.title ?? tried.flow?.title ?? "";
  $("solved").hidden = true;
  $("flow-question").hidden = step.finished;
  $("flow-ending").hidden = !step.finished;
  if (!step.finished) {
    $("flow-question-text").textContent = step.question;
    const buttons = step.answers.map((answer) =>
      element("button", answer.label, { type: "button" }),
    );
    // One answer at a time. Each answer's request id is kept for its retries,
    // and the question is named: a second tap or a send thought lost never
    // answers the question after this one.
    const requestIds = step.answers.map(() => crypto.randomUUID());
    step.answers.forEach((answer, i) => {
      const button = buttons[i]!;
      button.addEventListener(
        "click",
        () =>
          void busy(button, async () => {
            for (const other of buttons) other.disabled = true;
            try {
              let next: FlowStep;
              try {
                next = await help.answerFlow({
                  session: tried.session,
                  answer: i,
                  questionId: step.questionId,
                  requestId: requestIds[i],
                });
              } catch (err) {
                // Answered already (an answer whose reply was lost, then
                // another): the guide starts again rather than stay stuck.
                if (ConnectError.from(err).code !== Code.Aborted || !tried.flow) throw err;
                await startFlow(tried.flow);
                say(t("flowRestarted"));
                return;
              }
              const taken = `${step.question} → ${answer.label}`;
              tried.path.push(taken);
              $("flow-path").append(element("li", taken));
              renderStep(next);
              $("flow-title").focus();
            } finally {
              for (const other of buttons) other.disabled = false;
            }
          }),
      );
    });
    $("flow-answers").replaceChildren(...buttons.map((button) => listItem(button)));
    return;
  }
  if (step.article) {
    tried.read.push(step.article.title);
    // A ticket after it is that article's matter (an ending of another
    // category's, reached from this flow: a ban from the sign-in guide).
    tried.category = step.article.category || tried.category;
    renderArticle(step.article, $("flow-ending-title"), $("flow-ending-body"));
  } else {
    const action =
      step.action === "phone_change"
        ? t("actionPhoneChange")
        : step.action === "restriction_reasons"
          ? t("actionRestrictionReasons")
          : step.action;
    $("flow-ending-title").textContent = t("flowAction", { action });
    $("flow-ending-body").replaceChildren();
  }
  askSolved("flow-solved");
}

$("solved-yes").addEventListener(
  "click",
  () =>
    void busy($<HTMLButtonElement>("solved-yes"), async () => {
      await help.resolveHelp({ session: tried.session, solved: true });
      $("solved-buttons").hidden = true;
      $("solved-thanks").textContent = t("solvedThanks");
      // The button pressed is gone: focus goes to what took its place, not to the page's start.
      $("solved-thanks").focus();
      startOver();
    }),
);

// "Not solved" opens the ticket form with what the help centre knows; on submit
// ResolveHelp records the answer and opens the ticket as the user wrote it, with
// the screenshot.
$("solved-no").addEventListener(
  "click",
  () => void busy($<HTMLButtonElement>("solved-no"), () => openTicketForm(draft, tried.session)),
);

$("contact-support").addEventListener(
  "click",
  () => void busy($<HTMLButtonElement>("contact-support"), () => openTicketForm()),
);

for (const back of document.querySelectorAll<HTMLButtonElement>("button.back")) {
  back.addEventListener("click", () => {
    history.replaceState(null, "", `${location.pathname}${location.search}`);
    show("help");
  });
}

// -- the ticket form ---------------------------------------------------------------------

interface Draft {
  category: string;
  subject: string;
  description: string;
}

let categories: TicketCategory[] = [];

function categoryLabel(id: string): string {
  return categories.find((c) => c.id === id)?.labels[locale] ?? id;
}

function renderCategories(): void {
  const select = $<HTMLSelectElement>("category");
  const chosen = select.value;
  select.replaceChildren(
    element("option", t("chooseCategory"), { value: "" }),
    ...categories.map((c) => element("option", c.labels[locale] ?? c.id, { value: c.id })),
  );
  select.value = chosen;
}

/** The ticket the help session suggests: its category, and what was tried. */
function draft(): Draft {
  const lines = [
    ...tried.searches.map((query) => t("draftSearched", { query })),
    ...(tried.flow
      ? [t("draftFlow", { title: tried.flow.title }), ...tried.path.map((p) => `  ${p}`)]
      : []),
    ...tried.read.map((title) => t("draftRead", { title })),
  ];
  return {
    category: tried.category,
    subject: tried.category ? t("draftSubject", { category: categoryLabel(tried.category) }) : "",
    description: lines.length ? [t("draftTried"), ...lines, t("draftStill"), ""].join("\n") : "",
  };
}

/** Chosen once per form: a submit retried after a lost answer finds the same ticket. */
let requestId = "";
/** A ticket as the form sends it. */
interface TicketDraft {
  category: string;
  subject: string;
  description: string;
  locale: string;
  contact: { email: string; phone: string; channels: Channel[] };
  evidence: { name: string }[];
}
/**
 * What was sent under `requestId` without an answer (the network failed, the
 * service was away): any of it may have opened the ticket.
 */
let unanswered: TicketDraft[] = [];
/** The help session the form answers "not solved" for ("" when opened directly). */
let notSolvedIn = "";
/**
 * The screenshot already uploaded for this form, so a retry does not send it
 * again (no `file`: uploaded before the page was reloaded; sent as long as no
 * other file is chosen).
 */
let uploaded: { file?: File; name: string; fileName: string } | undefined;

/** The form's fields. */
interface FormFields {
  category: string;
  subject: string;
  description: string;
  email: string;
  phone: string;
  channels: string[];
}

/** The form's fields as the user left them, as a submit sends them (trimmed). */
function formFields(): FormFields {
  const { category, subject, description, email, phone, channels } = typed();
  return {
    category: category.trim(),
    subject: subject.trim(),
    description: description.trim(),
    email: email.trim(),
    phone: phone.trim(),
    channels,
  };
}

/** The form's fields exactly as typed (untrimmed: given back, they go on where they were). */
function typed(): FormFields {
  const value = (id: string) => $<HTMLInputElement>(id).value;
  return {
    category: value("category"),
    subject: value("subject"),
    description: value("description"),
    email: value("email"),
    phone: value("phone"),
    channels: [...document.querySelectorAll<HTMLInputElement>("input[name=channel]:checked")].map(
      (box) => box.value,
    ),
  };
}

function fillForm(fields: FormFields): void {
  $<HTMLSelectElement>("category").value = fields.category;
  $<HTMLInputElement>("subject").value = fields.subject;
  $<HTMLTextAreaElement>("description").value = fields.description;
  $<HTMLInputElement>("email").value = fields.email;
  $<HTMLInputElement>("phone").value = fields.phone;
  for (const box of document.querySelectorAll<HTMLInputElement>("input[name=channel]")) {
    box.checked = fields.channels.includes(box.value);
  }
}

/**
 * What the user is typing in the ticket form, kept in this tab's session
 * storage as they type: a reload, or a phone dropping the page while it is
 * in the background, loses nothing. Given back to its writer alone when they
 * next open the form; gone once its ticket is opened, a new help session
 * starts the form blank, or they sign out (`forget`).
 */
const DRAFT_KEY = "casemesh.ticket.draft";
interface KeptDraft {
  who: string;
  form: FormFields;
}

function keepDraft(): void {
  if (token) {
    sessionStorage.setItem(
      DRAFT_KEY,
      JSON.stringify({ who: subjectOf(token), form: typed() } satisfies KeptDraft),
    );
  }
}

/** The signed-in person's form as they left it before the page was reloaded, if any. */
function keptDraft(): FormFields | undefined {
  let kept: KeptDraft | null = null;
  try {
    kept = JSON.parse(sessionStorage.getItem(DRAFT_KEY) ?? "null") as KeptDraft | null;
  } catch {
    kept = null;
  }
  if (!token || kept?.who !== subjectOf(token) || !Array.isArray(kept.form?.channels)) {
    dropDraft(); // not theirs to see
    return undefined;
  }
  return kept.form;
}

function dropDraft(): void {
  sessionStorage.removeItem(DRAFT_KEY);
}

/**
 * A submit whose answer never came (`unanswered`) may have opened the
 * ticket: it is settled before any new form (`settlePending`), and until the
 * service answers, the form is given back as the user left it, under the
 * same request id, so that sending it again opens one ticket. It is kept in
 * this tab's session storage too, so that a reload does not lose it; for its
 * writer only, and never past signing out on purpose.
 */
const PENDING_KEY = "casemesh.ticket.unanswered";
interface Pending {
  who: string;
  requestId: string;
  notSolvedIn: string;
  unanswered: TicketDraft[];
  form: FormFields;
  screenshot?: { name: string; fileName: string };
}

/** The form's fields taken from storage, put back when the form is next shown. */
let refill: FormFields | undefined;

function keepPending(): void {
  if (!unanswered.length || !token) {
    return;
  }
  const chosen = $<HTMLInputElement>("screenshot").files?.[0];
  const screenshot =
    uploaded && (!uploaded.file || uploaded.file === chosen)
      ? { name: uploaded.name, fileName: uploaded.fileName }
      : undefined;
  const kept: Pending = {
    who: subjectOf(token),
    requestId,
    notSolvedIn,
    unanswered,
    form: refill ?? formFields(),
    screenshot,
  };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(kept));
}

/** After a reload (or signing in again): the signed-in person's unanswered submit, if any. */
function restorePending(): void {
  if (unanswered.length || !token) {
    return; // the page still has it
  }
  let kept: Pending | null = null;
  try {
    kept = JSON.parse(sessionStorage.getItem(PENDING_KEY) ?? "null") as Pending | null;
  } catch {
    kept = null;
  }
  if (
    !Array.isArray(kept?.unanswered) ||
    !kept.unanswered.length ||
    kept.who !== subjectOf(token)
  ) {
    sessionStorage.removeItem(PENDING_KEY); // not theirs to see
    return;
  }
  requestId = kept.requestId;
  notSolvedIn = kept.notSolvedIn;
  unanswered = kept.unanswered;
  uploaded = kept.screenshot;
  refill = kept.form;
}

/**
 * Opens the form's ticket: under its request id, or for its help session
 * (one ticket per session). A submit whose answer was lost may have opened
 * it; sent again changed (a typo fixed meanwhile), the service refuses it as
 * made with other words: that ticket is the user's, found by sending again
 * what was sent before without an answer, and the page says the changes are
 * not in it.
 */
async function openOnce(written: TicketDraft): Promise<Ticket> {
  const form = requestId;
  try {
    return await sendTicket(written);
  } catch (err) {
    if (requestId !== form) {
      // Its writer signed out, or someone else signed in: the form is not theirs.
      throw err;
    }
    if (OPENED_OTHERWISE.has(errorReason(err))) {
      // After help that did not help, the session's own words open it as it
      // recorded them, whatever was sent before.
      const tries = notSolvedIn
        ? [...unanswered, { ...written, category: "", subject: "", description: "" }]
        : unanswered;
      for (const before of tries) {
        try {
          const opened = await sendTicket(before);
          changesLeftOut = true;
          return opened;
        } catch (again) {
          if (!OPENED_OTHERWISE.has(errorReason(again))) {
            throw again;
          }
        }
      }
    } else if (UNKNOWN_OUTCOME.has(ConnectError.from(err).code)) {
      const sent = JSON.stringify(written);
      if (!unanswered.some((before) => JSON.stringify(before) === sent)) {
        unanswered.push(written);
      }
      keepPending();
    }
    throw err;
  }
}

async function sendTicket(written: TicketDraft): Promise<Ticket> {
  if (!notSolvedIn) {
    return tickets.createTicket({ requestId, ticket: written });
  }
  // After help that did not help, the help centre counts the answer and the
  // gateway opens the ticket (one per session).
  const resolved = await help.resolveHelp({ session: notSolvedIn, solved: false, ...written });
  return tickets.getTicket({ name: resolved.ticket });
}

/** The reasons a ticket is refused for when it was opened with other words. */
const OPENED_OTHERWISE = new Set(["REQUEST_ID_REUSED", "SESSION_OUTCOME_RECORDED"]);

/** Failures after which the ticket may have been opened all the same. */
const UNKNOWN_OUTCOME = new Set([
  Code.Unknown,
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Canceled,
  Code.Internal,
  Code.Aborted, // (its first send still under way)
]);

/** Whether the ticket just opened is the first submit's, without the form's later changes. */
let changesLeftOut = false;

/** What settling a submit left unanswered came to (`settlePending`). */
interface Settled {
  /** Its ticket, open now. */
  ticket?: Ticket;
  /** Whether the form's later changes are not in it. */
  leftOut?: boolean;
  /** The service's refusal of it: it opened nothing, and the form is the user's to fix. */
  refused?: unknown;
}

/**
 * A submit left unanswered, settled before any new form: sent again under its
 * request id, it opens its ticket unless that is open already. Left pending,
 * the next form would be sent under its id and taken for it (a new problem
 * filed as the old ticket). Nothing settled while the service cannot be
 * reached: the form is then given back as it was.
 */
async function settlePending(): Promise<Settled> {
  const last = unanswered[unanswered.length - 1];
  if (!last) {
    return {};
  }
  try {
    const ticket = await openOnce(last);
    const leftOut = changesLeftOut || JSON.stringify(refill ?? formFields()) !== formOf(last);
    changesLeftOut = false;
    dropPending();
    interrupted = undefined; // its form was sent: nothing to give back after signing in
    formWrittenIn = undefined; // nor to write on in the next form
    return { ticket, leftOut };
  } catch (err) {
    if (ended(err)) {
      throw err; // nothing to show its writer now
    }
    return UNKNOWN_OUTCOME.has(ConnectError.from(err).code) ? {} : { refused: err };
  }
}

/** The form's fields as `written` filled them, to compare with what the form holds. */
function formOf(written: TicketDraft): string {
  const fields: FormFields = {
    category: written.category ?? "",
    subject: written.subject ?? "",
    description: written.description ?? "",
    email: written.contact?.email ?? "",
    phone: written.contact?.phone ?? "",
    channels: (written.contact?.channels ?? []).map((c) => (c === Channel.SMS ? "SMS" : "EMAIL")),
  };
  return JSON.stringify(fields);
}

/** A submit answered (or refused): nothing of it is kept any more. */
function dropPending(): void {
  requestId = crypto.randomUUID();
  unanswered = [];
  uploaded = undefined;
  refill = undefined;
  sessionStorage.removeItem(PENDING_KEY);
  dropDraft(); // its ticket is open
}

/** Whether the form's ticket is on its way to the service (not yet opened, or refused). */
let sending = false;

/** The help session the ticket form was written in (undefined: a blank form). */
let formWrittenIn: ReturnType<typeof newHelpSession> | undefined;

/**
 * Shows the ticket form, which has no address of its own. Opened from my
 * tickets or a ticket's page, the address that named them goes: left there,
 * a reload would show them, not the form, and a submit of the form left
 * unanswered would wait unsettled (see start). It goes by a new history
 * entry, so that Back still returns to them.
 */
function showTicketForm(): void {
  if (location.hash) {
    window.history.pushState(null, "", `${location.pathname}${location.search}`);
  }
  show("ticket-form-view");
}

/**
 * Shows the ticket form; `prefill` is the help centre's suggestion, made once
 * the categories are read (its subject names the category by its label).
 */
async function openTicketForm(prefill?: () => Draft, session = ""): Promise<void> {
  if (sending) {
    // Back to the form whose submit is still on its way, as it was: its
    // request id and help session stay, so that if the answer is lost, the
    // next submit finds the ticket it opened rather than opening a second.
    showTicketForm();
    return;
  }
  if (!categories.length) {
    categories = (await tickets.listTicketCategories({})).categories;
  }
  const settled = unanswered.length ? await settlePending() : {};
  if (unanswered.length) {
    showPendingForm(settled.refused);
    return;
  }
  // What the user typed stays while their help session lasts (they went back
  // to read more, say); a ticket opened, signing out (`forget`) or a new
  // help session (`startOver`) starts a blank form.
  if (formWrittenIn !== tried) {
    $<HTMLFormElement>("ticket-form").reset();
    uploaded = undefined;
    renderCategories();
    // The first form since the page was loaded: as its writer left it before.
    const kept = formWrittenIn === undefined ? keptDraft() : undefined;
    if (kept) {
      fillForm(kept);
    }
    formWrittenIn = tried;
  }
  renderCategories();
  // The help centre's suggestions go only where the user has written nothing.
  if (prefill) {
    const suggested = prefill();
    for (const [id, value] of [
      ["category", suggested.category],
      ["subject", suggested.subject],
      ["description", suggested.description],
    ] as const) {
      const input = $<HTMLInputElement>(id);
      if (!input.value.trim()) input.value = value;
    }
  }
  $("upload").hidden = !$<HTMLInputElement>("screenshot").files?.length;
  requestId = crypto.randomUUID();
  unanswered = [];
  notSolvedIn = session;
  showTicketForm();
  sayEarlier(settled);
}

/** The earlier submit's ticket, now open, said on the page shown. */
function sayEarlier({ ticket, leftOut }: Settled): void {
  if (ticket && leftOut) {
    warn(t("earlierOpenedWithoutChanges", { subject: ticket.subject }));
  } else if (ticket) {
    say(t("earlierOpened", { subject: ticket.subject }));
  }
}

/**
 * The form of a submit left unanswered, as the user left it, under its request
 * id (a new one would open a second ticket): while the service cannot be
 * reached to say whether it opened the ticket, or with the service's
 * `refused` beside the fields it names.
 */
function showPendingForm(refused?: unknown): void {
  renderCategories();
  if (refill) {
    fillForm(refill);
    refill = undefined;
  }
  const kept = uploaded && !uploaded.file ? uploaded : undefined;
  $("upload").hidden = !kept && !$<HTMLInputElement>("screenshot").files?.length;
  if (kept) {
    $<HTMLProgressElement>("upload-progress").value = 100;
    $("upload-status").textContent = t("screenshotKept", { name: kept.fileName });
  }
  showTicketForm();
  if (refused) {
    showError(refused, placeTicketField);
  } else {
    say(t("formPending"));
  }
}

/** The most characters a subject may have (`Ticket.subject`). */
const SUBJECT_MOST = 200;

// The form's inputs by the fields CreateTicket (ticket.…) and ResolveHelp name.
const TICKET_FIELDS: Record<string, string> = {
  category: "category",
  subject: "subject",
  description: "description",
  "contact.email": "email",
  "contact.phone": "phone",
  "contact.channels": "channels",
};

const placeTicketField: Placer = (field) => {
  const own = field.replace(/^ticket\./, "");
  if (own.startsWith("evidence")) {
    return $("screenshot");
  }
  const id = TICKET_FIELDS[own];
  return id ? $(id) : undefined;
};

/** The file the screenshot field holds now (undefined: none). */
function chosenScreenshot(): File | undefined {
  return $<HTMLInputElement>("screenshot").files?.[0];
}

/** The screenshot being uploaded, and what stops its upload. */
let uploading: { file: File; stop: AbortController } | undefined;

/** Why a submit stopped: its screenshot was changed, or taken away, while it was uploading. */
const SCREENSHOT_CHANGED = new Error("the screenshot was changed while it was uploading");

$("screenshot").addEventListener("change", () => {
  if (uploaded && !uploaded.file) {
    uploaded = undefined; // the one uploaded before the reload: another is chosen
  }
  // Another file chosen, or none, is not the one being uploaded: it is not
  // sent on, nor does it drive the progress bar.
  if (uploading && uploading.file !== chosenScreenshot()) {
    uploading.stop.abort();
  }
  $<HTMLProgressElement>("upload-progress").value = 0;
  $("upload-status").textContent = "";
  $("upload").hidden = !$<HTMLInputElement>("screenshot").files?.length;
});

// What the user types is kept as they type it; while a submit is
// unanswered, kept with it too (a reload loses nothing).
for (const edited of ["input", "change"]) {
  $("ticket-form").addEventListener(edited, () => {
    keepDraft();
    if (unanswered.length) {
      refill = undefined;
      keepPending();
    }
  });
}

/** Uploads the chosen screenshot (once per file), driving the progress bar. */
async function uploadScreenshot(file: File): Promise<string> {
  if (uploaded?.file === file) {
    return uploaded.name;
  }
  const progress = $<HTMLProgressElement>("upload-progress");
  $("upload").hidden = false;
  progress.value = 0;
  $("upload-status").textContent = t("uploading");
  const made = callFor();
  // Stopped when the sign-in ends (as every call is), and when the user
  // chooses another file or none.
  const stop = new AbortController();
  const signInEnded = () => stop.abort();
  made.calls.signal.addEventListener("abort", signInEnded, { once: true });
  uploading = { file, stop };
  try {
    const evidence = await answered(
      uploadEvidence(api, currentToken, file, {
        signal: stop.signal,
        language: () => locale,
        onProgress: (loaded, total) => {
          progress.value = total ? Math.round((loaded / total) * 100) : 0;
        },
      }),
      made,
    );
    if (chosenScreenshot() !== file) {
      throw SCREENSHOT_CHANGED; // changed as its upload ended: it is not the one to attach
    }
    progress.value = 100;
    $("upload-status").textContent = t("uploaded");
    uploaded = { file, name: evidence.name, fileName: file.name };
    return evidence.name;
  } catch (err) {
    if (ended(err)) {
      throw err;
    }
    if (chosenScreenshot() !== file) {
      throw SCREENSHOT_CHANGED; // (the progress bar is the new file's now)
    }
    $("upload-status").textContent = "";
    throw err;
  } finally {
    made.calls.signal.removeEventListener("abort", signInEnded);
    if (uploading?.stop === stop) {
      uploading = undefined;
    }
  }
}

$("ticket-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = (id: string) => $<HTMLInputElement>(id).value.trim();
  let placing: Placer = placeTicketField;
  void busy(
    $<HTMLButtonElement>("submit-ticket"),
    async () => {
      clearError();
      // The service counts characters (code points), not the UTF-16 units a
      // `maxlength` would: an emoji is one.
      if ([...value("subject")].length > SUBJECT_MOST) {
        refuse($("subject"), t("tooLong", { n: SUBJECT_MOST }));
        return;
      }
      const evidence: { name: string }[] = [];
      const file = chosenScreenshot();
      // On its way from here (its screenshot first) until the ticket is
      // opened or refused; once opened, the form is a new one's.
      sending = true;
      let ticket: Ticket;
      /** The form's fields as sent (see formOf). */
      let sent = "";
      try {
        if (file) {
          // The upload's own errors (type, size, name) are about the file input.
          placing = () => $("screenshot");
          try {
            evidence.push({ name: await uploadScreenshot(file) });
          } catch (err) {
            if (err !== SCREENSHOT_CHANGED) {
              throw err;
            }
            // Not sent with the file the user no longer wants, nor without
            // one they may yet choose: they submit again as the form is now.
            warn(t("screenshotChanged"));
            $("error").focus();
            return;
          }
          placing = placeTicketField;
        } else if (uploaded && !uploaded.file) {
          evidence.push({ name: uploaded.name }); // uploaded before the page was reloaded
        }
        say(t("submitting"));
        const channels = [
          ...document.querySelectorAll<HTMLInputElement>("input[name=channel]:checked"),
        ].map((box) => (box.value === "SMS" ? Channel.SMS : Channel.EMAIL));
        const written: TicketDraft = {
          category: value("category"),
          subject: value("subject"),
          description: $<HTMLTextAreaElement>("description").value.trim(),
          locale,
          contact: { email: value("email"), phone: value("phone"), channels },
          evidence,
        };
        sent = formOf(written);
        ticket = await openOnce(written);
      } finally {
        sending = false;
      }
      // What the user changed while it was on its way is not in it.
      const edited = JSON.stringify(formFields()) !== sent || chosenScreenshot() !== file;
      const onForm = !$("ticket-form-view").hidden;
      dropPending();
      startOver();
      const leftOut = changesLeftOut;
      changesLeftOut = false;
      if (!onForm) {
        // The user has gone on to read something else: told, not taken away.
        sayEarlier({ ticket, leftOut: leftOut || edited });
        return;
      }
      // Created: its page at once, so that nothing sends the form again (a
      // new request id would open a second ticket); its history is read
      // after, and a failure there is said on that page.
      showTicket(ticket, []);
      const unsent: Key | undefined = leftOut
        ? "createdBeforeChanges"
        : edited
          ? "createdWithoutEdits"
          : undefined;
      say(t("ticketCreated"));
      // Not awaited: the form's button is free for another ticket meanwhile.
      void openTicket(ticket.name, ticket, { unlessLeft: true }).then(
        () => {
          if (unsent) {
            warn(t(unsent)); // once its page is whole (reading it clears alerts)
          }
        },
        (err: unknown) => {
          if (ended(err)) {
            return;
          }
          showError(err, undefined, false); // its history could not be read: said on its page
          if (unsent) {
            $("error-list").append(element("li", t(unsent)));
          }
        },
      );
    },
    (field) => placing(field),
  );
});

// -- my tickets ------------------------------------------------------------------------

/** The page of "my tickets" asked for each time (the "more" button asks for the next). */
const TICKETS_PAGE = 20;

/** The user's tickets listed so far, newest first, and the next page's token ("": none). */
let mine: { tickets: Ticket[]; next: string } | undefined;

/** Reads the first page of the user's tickets and shows it, if the address still asks for it. */
async function openTicketList(): Promise<void> {
  say(t("loadingTickets"));
  const page = await tickets.listTickets({ pageSize: TICKETS_PAGE });
  if (location.hash !== "#tickets") {
    say(""); // the user went on while it was read
    return;
  }
  mine = { tickets: page.tickets, next: page.nextPageToken };
  renderTicketList();
  show("tickets");
  say("");
}

function renderTicketList(): void {
  if (!mine) {
    return;
  }
  $("tickets-empty").hidden = mine.tickets.length > 0;
  $("ticket-list").replaceChildren(
    ...mine.tickets.map((ticket) => {
      // A link: the ticket has an address (`#tickets/{id}`), back and forward work.
      const link = element("a", ticket.subject, { href: `#${ticket.name}`, class: "result-title" });
      const meta = element("p", `${t("listedNumber", { id: shortId(ticket.name) })} · `, {
        class: "meta",
      });
      meta.append(
        element("span", statusLabel(ticket.status), {
          class: "state",
          "data-status": TicketStatus[ticket.status] ?? "UNSPECIFIED",
        }),
      );
      if (ticket.updateTime) {
        meta.append(" · ", t("updated"), " ", when(timestampDate(ticket.updateTime)));
      }
      return listItem(link, meta);
    }),
  );
  $("more-tickets").hidden = !mine.next;
}

$("more-tickets").addEventListener(
  "click",
  () =>
    void busy($<HTMLButtonElement>("more-tickets"), async () => {
      if (!mine?.next) {
        return;
      }
      const page = await tickets.listTickets({ pageSize: TICKETS_PAGE, pageToken: mine.next });
      // None is listed twice, whatever the pages hold.
      const listed = new Set(mine.tickets.map((ticket) => ticket.name));
      const added = page.tickets.filter((ticket) => !listed.has(ticket.name));
      mine.tickets.push(...added);
      mine.next = page.nextPageToken;
      renderTicketList();
      say(t("ticketsShown", { count: mine.tickets.length }));
      // On to the first of the new ones (the button may have gone with the
      // last page); to the list's heading when the page added none.
      const first = $("ticket-list")
        .querySelectorAll("a")
        .item(mine.tickets.length - added.length);
      (first ?? $("tickets-heading")).focus();
    }),
);

// A link to where the address already is changes nothing (no hashchange): read it again.
for (const link of document.querySelectorAll<HTMLAnchorElement>('a[href="#tickets"]')) {
  link.addEventListener("click", () => {
    if (location.hash === "#tickets") {
      void busy(null, openTicketList);
    }
  });
}

$("new-ticket-from-list").addEventListener(
  "click",
  () => void busy($<HTMLButtonElement>("new-ticket-from-list"), () => openTicketForm()),
);

// -- the ticket page ---------------------------------------------------------------------

let shown: { ticket: Ticket; events: TicketEvent[] } | undefined;

/** What was written on a ticket's page, not sent yet, and the request ids of what was sent. */
interface Answering {
  reply: string;
  score: string;
  comment: string;
  /** The request ids of the reply and the rating being sent (see RetryKey). */
  replyKey: RetryKey;
  ratingKey: RetryKey;
}

/**
 * Each ticket's, by its name: a reply or a rating half-written waits for its
 * ticket while the user reads another, and one whose answer was lost is sent
 * again under its request id when they come back (so it lands once).
 * Signing out (`forget`) drops them all.
 */
const answering = new Map<string, Answering>();

function answeringOf(name: string): Answering {
  let found = answering.get(name);
  if (!found) {
    found = {
      reply: "",
      score: "",
      comment: "",
      replyKey: new RetryKey(),
      ratingKey: new RetryKey(),
    };
    answering.set(name, found);
  }
  return found;
}

/** The reply and rating written on the page shown, kept for its ticket. */
function keepAnswering(name: string): void {
  const kept = answeringOf(name);
  kept.reply = $<HTMLTextAreaElement>("reply").value;
  kept.score = document.querySelector<HTMLInputElement>("input[name=score]:checked")?.value ?? "";
  kept.comment = $<HTMLTextAreaElement>("rating-comment").value;
}

/** The reply and rating written for `name` before, back in their boxes (none: empty ones). */
function restoreAnswering(name: string): void {
  $<HTMLFormElement>("reply-form").reset();
  $<HTMLFormElement>("rating-form").reset();
  const kept = answering.get(name);
  if (!kept) {
    return;
  }
  $<HTMLTextAreaElement>("reply").value = kept.reply;
  $<HTMLTextAreaElement>("rating-comment").value = kept.comment;
  for (const score of document.querySelectorAll<HTMLInputElement>("input[name=score]")) {
    score.checked = score.value === kept.score;
  }
}

function showTicket(ticket: Ticket, events: TicketEvent[]): void {
  const again = shown?.ticket.name === ticket.name && !$("ticket").hidden;
  if (shown?.ticket.name !== ticket.name) {
    // What was written for the other ticket waits for it; this one's comes back.
    if (shown) {
      keepAnswering(shown.ticket.name);
    }
    restoreAnswering(ticket.name);
  }
  shown = { ticket, events };
  renderTicket();
  window.history.replaceState(null, "", `${location.pathname}${location.search}#${ticket.name}`);
  if (again) {
    // The same ticket read again (refreshed, answered): the focus stays where it was.
    clearError();
  } else {
    show("ticket");
  }
}

/** Whether the ticket's page still shows `name` (the user may have gone on meanwhile). */
function showing(name: string): boolean {
  return !$("ticket").hidden && shown?.ticket.name === name;
}

/** Reads the ticket and its history and shows them; `unlessLeft`: only if
 * its page still shows it, `unlessMovedFrom`: only if the address is still
 * that one (the user may have gone on while it was read). */
async function openTicket(
  name: string,
  known?: Ticket,
  { unlessLeft = false, unlessMovedFrom = "" } = {},
): Promise<void> {
  const movesBefore = moves;
  const [ticket, history] = await Promise.all([
    known ? Promise.resolve(known) : tickets.getTicket({ name }),
    ticketHistory(tickets, name),
  ]);
  if (!categories.length) {
    categories = (await tickets.listTicketCategories({})).categories;
  }
  if (unlessLeft && !showing(ticket.name)) {
    return;
  }
  // Opened from the address (a link, back or forward): not if the user has
  // moved on meanwhile (back to the list, another ticket, a new ticket's form).
  if (unlessMovedFrom && (location.hash !== unlessMovedFrom || moves !== movesBefore)) {
    return;
  }
  showTicket(ticket, history);
}

function statusLabel(status: TicketStatus): string {
  const name = TicketStatus[status] ?? "UNSPECIFIED";
  return textOr(locale, `status.${name}`, name);
}

function renderTicket(): void {
  if (!shown) {
    return;
  }
  const { ticket, events } = shown;
  $("ticket-number").replaceChildren(element("span", shortId(ticket.name), { title: ticket.name }));
  const status = $("ticket-status");
  status.textContent = statusLabel(ticket.status);
  status.dataset.status = TicketStatus[ticket.status] ?? "UNSPECIFIED";
  $("ticket-category").textContent = categoryLabel(ticket.category);
  $("ticket-subject").textContent = ticket.subject;
  $("ticket-description").textContent = ticket.description;
  $("ticket-updates").textContent = (ticket.contact?.channels ?? [])
    .map((c) =>
      c === Channel.SMS
        ? `${t("channelSms")} ${ticket.contact?.phone ?? ""}`
        : `${t("channelEmail")} ${ticket.contact?.email ?? ""}`,
    )
    .join(", ");
  $("ticket-history").replaceChildren(
    ...events.map((event) => {
      const item = element("li", "", { "data-type": event.type });
      if (event.time) {
        item.append(when(timestampDate(event.time)), " ");
      }
      // The requester's own replies (from this page or by e-mail) apart from the agent's.
      const mineToo = event.type === "CommentAdded" && event.actor === ticket.requester;
      const what = mineToo ? t("yourReply") : textOr(locale, `event.${event.type}`, event.type);
      item.append(element("span", what, { class: "event" }));
      item.append(element("span", ` · ${statusLabel(event.status)}`, { class: "meta" }));
      if (event.score) {
        item.append(element("p", t("eventScore", { score: event.score }), { class: "meta" }));
      }
      // A ticket's first step carries its description: shown above, with the facts.
      if (event.text && event.type !== "TicketCreated") {
        item.append(element("p", event.text));
      }
      if (event.evidence.length) {
        item.append(
          element("p", t("evidence", { count: event.evidence.length }), { class: "meta" }),
        );
      }
      return item;
    }),
  );
  renderAnswering(ticket);
}

/** The reply box and the rating, as far as the ticket's status allows them. */
function renderAnswering(ticket: Ticket): void {
  const status = ticket.status;
  // AddComment refuses a closed or cancelled ticket; a requester's reply
  // takes a pending one back to the agent and reopens a solved one.
  const final = status === TicketStatus.CLOSED || status === TicketStatus.CANCELLED;
  $("reply-section").hidden = final;
  $("reply-closed").hidden = !final;
  $("reply-closed").textContent = final
    ? t(status === TicketStatus.CLOSED ? "replyClosed" : "replyCancelled")
    : "";
  $("reply-note").textContent = t(
    status === TicketStatus.PENDING
      ? "replyNotePending"
      : status === TicketStatus.SOLVED
        ? "replyNoteSolved"
        : "replyNoteOpen",
  );

  // Rated once, when SOLVED or CLOSED (RateTicket); once rated, the rating.
  const rating = ticket.rating;
  const ratable = status === TicketStatus.SOLVED || status === TicketStatus.CLOSED;
  $("rating-section").hidden = !rating && !ratable;
  $("rating-heading").textContent = t(rating ? "ratedHeading" : "ratingHeading");
  $("rating-form").hidden = Boolean(rating) || !ratable;
  $("rating-given").hidden = !rating;
  $("rating-given").textContent = rating ? t("ratingGiven", { score: rating.score }) : "";
  $("rating-given-comment").hidden = !rating?.comment;
  $("rating-given-comment").textContent = rating?.comment ?? "";
}

/**
 * After a change refused because the ticket is not as the page shows it —
 * changed meanwhile (ABORTED: a stale etag, or a change at the same moment),
 * or no longer open to it (FAILED_PRECONDITION: closed, rated already) — the
 * ticket as it is now, and why; what the user wrote stays. Any other failure
 * is thrown as it came.
 */
async function reloadRefused(err: unknown, name: string, changed: Key): Promise<void> {
  const error = ConnectError.from(err);
  if (error.code !== Code.Aborted && error.code !== Code.FailedPrecondition) {
    throw err;
  }
  await openTicket(name);
  if (error.code === Code.Aborted) {
    warn(t(changed));
  } else {
    showError(error);
  }
}

/**
 * What stays in a reply box once `sent` was sent from it: the words written
 * after it while it was on its way (nothing, if none); the box as it is if
 * the sent words were changed meanwhile (the writer decides what to send).
 */
function leftUnsent(value: string, sent: string): string {
  const written = value.trimStart();
  return written.startsWith(sent) ? written.slice(sent.length).trimStart() : value;
}

$("reply-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void busy(
    $<HTMLButtonElement>("send-reply"),
    async () => {
      if (!shown) {
        return;
      }
      clearError();
      const { ticket, events } = shown;
      const reply = { name: ticket.name, body: $<HTMLTextAreaElement>("reply").value.trim() };
      const keys = answeringOf(ticket.name);
      say(t("sendingReply"));
      let updated: Ticket;
      try {
        // Sent only if the ticket is still as shown (its etag); the same
        // text again, after an answer that never came, under the same id.
        updated = await tickets.addComment({
          ...reply,
          etag: ticket.etag,
          requestId: keys.replyKey.for(reply),
        });
      } catch (err) {
        await reloadRefused(err, ticket.name, "ticketChanged");
        if ($("reply-section").hidden && reply.body) {
          // Closed meanwhile: the reply box is gone; what they wrote is not.
          warn(t("replyNotSentClosed", { text: reply.body }));
          $("error").focus();
        }
        return;
      }
      keys.replyKey.done();
      say(t("replySent"));
      // Only what was sent leaves the box (or its ticket's keeping, when
      // another ticket is shown): words added while it was on its way are not
      // sent yet.
      if (shown?.ticket.name === ticket.name) {
        const box = $<HTMLTextAreaElement>("reply");
        box.value = leftUnsent(box.value, reply.body);
      } else {
        keys.reply = leftUnsent(keys.reply, reply.body);
      }
      if (showing(ticket.name)) {
        // Its new status at once; its history after (a failure there is said).
        showTicket(updated, events);
        await openTicket(updated.name, updated, { unlessLeft: true });
      }
    },
    (field) => (field === "body" ? $("reply") : undefined),
  );
});

/** The most characters a rating's comment may have (`RateTicketRequest.comment`). */
const RATING_COMMENT_MOST = 2000;

$("rating-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void busy(
    $<HTMLButtonElement>("send-rating"),
    async () => {
      if (!shown) {
        return;
      }
      clearError();
      const { ticket, events } = shown;
      const chosen = document.querySelector<HTMLInputElement>("input[name=score]:checked");
      const rating = {
        name: ticket.name,
        // None chosen: 0, which the gateway refuses next to the scores.
        score: chosen ? Number(chosen.value) : 0,
        comment: $<HTMLTextAreaElement>("rating-comment").value.trim(),
      };
      // Counted in characters (code points), as the service counts them, as the subject is.
      if ([...rating.comment].length > RATING_COMMENT_MOST) {
        refuse($("rating-comment"), t("tooLong", { n: RATING_COMMENT_MOST }));
        return;
      }
      say(t("sendingRating"));
      const keys = answeringOf(ticket.name);
      let updated: Ticket;
      try {
        updated = await tickets.rateTicket({ ...rating, requestId: keys.ratingKey.for(rating) });
      } catch (err) {
        await reloadRefused(err, ticket.name, "ticketChangedRating");
        return;
      }
      keys.ratingKey.done();
      say(t("rated"));
      if (showing(ticket.name)) {
        showTicket(updated, events);
        // The form is gone: on to the rating that took its place.
        $("rating-heading").focus();
        await openTicket(updated.name, updated, { unlessLeft: true });
      }
    },
    (field) =>
      field === "score" ? $("rating-score") : field === "comment" ? $("rating-comment") : undefined,
  );
});

$("refresh-ticket").addEventListener(
  "click",
  () =>
    void busy($<HTMLButtonElement>("refresh-ticket"), async () => {
      if (shown) {
        await openTicket(shown.ticket.name);
      }
    }),
);

$("new-ticket").addEventListener(
  "click",
  () => void busy($<HTMLButtonElement>("new-ticket"), () => openTicketForm()),
);

// -- language and start ------------------------------------------------------------------

function applyLocale(): void {
  document.documentElement.lang = locale;
  document.title = t("title");
  for (const el of document.querySelectorAll<HTMLElement>("[data-i18n]")) {
    const key = el.dataset.i18n ?? "";
    if (isKey(key)) {
      el.textContent = t(key);
    }
  }
  $<HTMLSelectElement>("language").value = locale;
  $("transport-note").textContent = t("transport", {
    transport: useGrpcWeb ? "gRPC-Web" : "Connect",
  });
  renderSignedIn();
  renderCategories();
  renderTicketList();
  renderTicket();
}

$("language").addEventListener("change", () => {
  const chosen = $<HTMLSelectElement>("language").value;
  locale = chosen === "en" ? "en" : "zh-CN";
  localStorage.setItem(LOCALE_KEY, locale);
  applyLocale();
  if (token) {
    // A start that failed is run whole again, not just its guides.
    void busy(null, startFailed ? startAgain : loadFlows);
  }
});

const TICKET_ROUTE = /^#(tickets\/[0-9a-f-]{36})$/;

/** Signed in: the view the address names (`#tickets`: my tickets,
 * `#tickets/{id}`: one of them), else the help centre. */
async function route(): Promise<void> {
  const ticket = TICKET_ROUTE.exec(location.hash)?.[1];
  if (ticket) {
    await openTicket(ticket, undefined, { unlessMovedFrom: location.hash });
  } else if (location.hash === "#tickets") {
    await openTicketList();
  } else {
    show("help");
  }
}

// The links to my tickets and to each ticket, and the browser's back and
// forward buttons. Other fragments (the skip link's #main) are no route.
window.addEventListener("hashchange", (e) => {
  // A token the app hands in (see takeHandedToken): the address goes back to
  // the view it named. Someone signed in goes on where they are with it;
  // otherwise it signs in.
  const before = token ? subjectOf(token) : undefined;
  if (new URLSearchParams(location.hash.slice(1)).has("token")) {
    if (takeHandedToken(new URL(e.oldURL).hash) && before !== subjectOf(token ?? "")) {
      void busy(null, () => signedIn(before ?? signedOutAs));
    }
    return;
  }
  const hash = location.hash;
  if (token && (hash === "" || hash === "#tickets" || TICKET_ROUTE.test(hash))) {
    void busy(null, route);
  }
});

/**
 * Signed in with nothing to show yet (the first view failed to load): the
 * help centre, never a blank page nor the sign-in form.
 */
function showSomething(): void {
  if (VIEWS.every((v) => v === "sign-in" || $(v).hidden)) show("help");
}

/** Whether this sign-in's last start failed to load the guides. */
let startFailed = false;

/** A start that failed, run again with what follows a sign-in. */
async function startAgain(): Promise<void> {
  await start();
  resumeForm();
}

/** Signed in: the help centre, or the view the address names. */
async function start(): Promise<void> {
  renderSignedIn();
  startFailed = false;
  try {
    await loadFlows();
  } catch (err) {
    if (ended(err)) {
      throw err; // signed out meanwhile: there is nothing to start again
    }
    startFailed = true;
    // The service is away for now: the help centre, where the guided flows
    // would be, offers to start again (the error says why).
    showSomething();
    const again = element("button", t("tryAgain"), { type: "button", id: "start-again" });
    again.addEventListener("click", () => void busy(again, startAgain));
    $("flow-list").replaceChildren(listItem(again));
    throw err;
  }
  say("");
  restorePending();
  await route().catch((err: unknown) => {
    if (!ended(err)) {
      showSomething(); // a link to a ticket that is not there: the help centre, and why
    }
    throw err;
  });
  if (unanswered.length && !location.hash) {
    // Reloaded with a submit unanswered: its ticket if the service can say it
    // is open, else its form first.
    const settled = await settlePending();
    if (settled.ticket) {
      showTicket(settled.ticket, []);
      sayEarlier(settled);
      await openTicket(settled.ticket.name, settled.ticket, { unlessLeft: true });
    } else {
      if (!categories.length) {
        categories = (await tickets.listTicketCategories({})).categories;
      }
      showPendingForm(settled.refused);
    }
  }
}

applyLocale();
if (token) {
  void busy(null, start);
} else {
  show("sign-in");
}
