/**
 * A copyright case (`appeals/…`): a takedown notice with its legal elements
 * and what is still missing, a counter-notice and the date the content is
 * restored unless the claimant goes to court, the parties, and the decision
 * with a statement of reasons; court action when the claimant shows it, and
 * how it ended.
 */

import {
  type Appeal,
  type AppealEvent,
  AppealKind,
  AppealOutcome,
  AppealState,
  Channel,
  CourtOutcome,
  HISTORY_READ,
  type Party,
  readPages,
  RightsRelationship,
} from "@casemesh/client";

import { appeals } from "./api";
import { label, nameOf } from "./dsa";
import {
  busy,
  type CaseHost,
  clearError,
  element,
  facts,
  field,
  group,
  say,
  select,
  sentByItsButtonOnly,
  shortId,
  t,
  when,
} from "./ui";

export async function openAppeal(name: string, host: CaseHost): Promise<void> {
  let found = await appeals.getAppeal({ name });
  if (found.state === AppealState.SUBMITTED && host.holds(name)) {
    found = await appeals.assignAppeal({ name });
  }
  // Page after page: a case's steps may carry more text than one page holds.
  const events = await readPages(async (pageToken) => {
    const page = await appeals.listAppealEvents({ name, pageSize: 200, pageToken });
    return { items: page.events, next: page.nextPageToken };
  }, HISTORY_READ);
  render(found, events, host);
}

function party(p: Party | undefined): HTMLElement | string {
  if (!p || (!p.legalName && !p.userId)) return "—";
  const made = element("span");
  made.append(
    element("strong", p.legalName || p.userId),
    element(
      "span",
      ` · ${p.userId || "—"} · ${p.contact?.email ?? ""} ${p.contact?.phone ?? ""} · ${p.locale}`,
      { class: "meta" },
    ),
  );
  return made;
}

function previews(refs: { name: string }[], host: CaseHost): HTMLElement | string {
  if (!refs.length) return t("none");
  const shown = element("div", "", { class: "previews" });
  shown.append(...refs.map((r) => host.preview(r.name)));
  return shown;
}

function yesNo(value: boolean): string {
  return value ? `✓ ${t("yes")}` : `✗ ${t("no")}`;
}

function render(a: Appeal, events: AppealEvent[], host: CaseHost): void {
  host.heading(
    t("appealHeading", { id: shortId(a.name), kind: label("kind", nameOf(AppealKind, a.kind)) }),
  );
  const stateName = nameOf(AppealState, a.state);
  const summary = facts([
    [
      t("caseState"),
      element("span", label("astate", stateName), { id: "case-state", "data-state": stateName }),
    ],
    [t("jurisdiction"), a.jurisdiction || "cn"],
    [t("nextStep"), a.nextStep ? `${label("step", a.nextStep)}` : "—"],
    [t("nextStepDue"), when(a.nextStepDue)],
    [t("assignee"), a.assignee || t("nobody")],
    [t("created"), when(a.createTime)],
  ]);

  const main = element("div", "", { class: "main-col" });
  const side = element("div", "", { class: "side-col" });

  const missing = element("section", "", {
    "aria-labelledby": "missing-heading",
    class: a.missingElements.length ? "missing" : "",
  });
  missing.append(element("h2", t("missingHeading"), { id: "missing-heading" }));
  const missingList = element("ul", "", { id: "missing-elements" });
  missingList.append(
    ...(a.missingElements.length
      ? a.missingElements.map((m) => element("li", label("element", m)))
      : [element("li", t("nothingMissing"))]),
  );
  missing.append(missingList);

  const parties = element("section", "", { "aria-labelledby": "parties-heading" });
  parties.append(
    element("h2", t("partiesHeading"), { id: "parties-heading" }),
    facts([
      [t("filer"), party(a.filer)],
      [t("uploader"), party(a.uploader)],
    ]),
  );

  const notice = element("section", "", { "aria-labelledby": "notice-heading" });
  notice.append(element("h2", t("noticeHeading"), { id: "notice-heading" }));
  if (a.kind === AppealKind.TAKEDOWN_NOTICE || a.notice) {
    const n = a.notice;
    notice.append(
      facts([
        [t("relationship"), label("rel", nameOf(RightsRelationship, n?.relationship ?? 0))],
        [t("work"), `${n?.work?.title ?? "—"}`],
        [t("workCreated"), when(n?.work?.creationTime)],
        [t("infringingItems"), (n?.infringingItems ?? []).join(", ") || "—"],
        [t("originalityEvidence"), previews(n?.originalityEvidence ?? [], host)],
        [t("infringementEvidence"), previews(n?.infringementEvidence ?? [], host)],
        [t("goodFaith"), yesNo(a.goodFaithStatement)],
        [t("accuracy"), yesNo(a.accuracyStatement)],
      ]),
    );
  }
  if (a.grounds || a.appealOf) {
    notice.append(
      facts([
        [t("appealOf"), a.appealOf || "—"],
        [t("grounds"), a.grounds || "—"],
      ]),
    );
  }
  main.append(missing, notice);

  if (a.counterNotice) {
    const cn = a.counterNotice;
    const counter = element("section", "", { "aria-labelledby": "counter-heading" });
    counter.append(
      element("h2", t("counterHeading"), { id: "counter-heading" }),
      facts([
        // Every item it answers for (one filed before it could name several: its one).
        [
          t("removedItem"),
          (cn.removedItems.length ? cn.removedItems : [cn.removedItem])
            .filter(Boolean)
            .join(", ") || "—",
        ],
        [t("counterReason"), cn.reason || "—"],
        [t("consentJurisdiction"), yesNo(cn.consentToJurisdiction)],
        [t("evidence"), previews(cn.evidence, host)],
        [
          t("restoreDate"),
          // Past it (restored, held for the court): the case's state says what followed.
          a.nextStep === "RESTORE" ? when(a.nextStepDue) : "—",
        ],
      ]),
    );
    main.append(counter);
  }

  const history = element("section", "", { "aria-labelledby": "appeal-history-heading" });
  const list = element("ol", "", { class: "history", "aria-labelledby": "appeal-history-heading" });
  list.append(
    ...events.map((e) => {
      const item = element("li", "", { "data-type": e.type });
      item.append(when(e.time), " ", element("span", label("aevent", e.type), { class: "event" }));
      item.append(
        element("span", ` · ${e.actor} · ${label("astate", nameOf(AppealState, e.state))}`, {
          class: "meta",
        }),
      );
      if (e.text) item.append(element("p", e.text, { class: "text" }));
      return item;
    }),
  );
  history.append(element("h2", t("timeline"), { id: "appeal-history-heading" }), list);
  main.append(history);

  side.append(summary, parties);
  if (a.decisionReasons?.ground) {
    const r = a.decisionReasons;
    const d = element("section", "", { "aria-labelledby": "appeal-decision-heading" });
    d.append(
      element("h2", t("decisionHeading"), { id: "appeal-decision-heading" }),
      facts([
        [t("ground"), r.ground],
        [t("decisionFacts"), element("p", r.facts, { class: "text" })],
        [t("automatedDetection"), yesNo(r.automatedDetection)],
        [t("automatedDecisionShort"), yesNo(r.automatedDecision)],
        [t("redress"), r.redress || "—"],
        [t("appealDeadline"), when(r.appealDeadline)],
      ]),
    );
    side.append(d);
  }
  const open = [
    AppealState.SUBMITTED,
    AppealState.UNDER_REVIEW,
    AppealState.INFO_REQUESTED,
  ].includes(a.state);
  if (open) {
    side.append(askInfo(a, host));
    main.append(decideForm(a, host));
  }
  if (a.state === AppealState.FORWARDED_TO_CLAIMANT) {
    side.append(courtAction(a, host));
  }
  if (a.state === AppealState.HELD) {
    side.append(courtOutcome(a, host));
  }
  const columns = element("div", "", { class: "columns" });
  columns.append(main, side);
  host.draw(columns);
}

function askInfo(a: Appeal, host: CaseHost): HTMLElement {
  const section = element("section", "", { "aria-labelledby": "ask-heading" });
  const message = element("textarea", "", { rows: "3" });
  const go = element("button", t("requestInfo"), { type: "button", id: "appeal-request-info" });
  const retry = host.retryKey("appeal-request-info");
  go.addEventListener(
    "click",
    () =>
      void busy(go, async () => {
        clearError();
        // The case as read: had the filer sent what was missing since, the
        // request is refused as stale rather than asking them again.
        const asked = { name: a.name, etag: a.etag, message: message.value.trim() };
        await appeals.requestAppealInfo({ ...asked, requestId: retry.for(asked) });
        // Sent: the message is the case's now. The rest the agent typed (a
        // statement of reasons begun) waits for their return to the case.
        host.sent(message); // before emptying it: what was sent is read from it
        message.value = "";
        host.done(t("infoRequested", { id: shortId(a.name) }));
      }),
  );
  section.append(
    element("h2", t("askHeading"), { id: "ask-heading" }),
    field(
      t("message"),
      message,
      "message",
      a.missingElements.length
        ? t("askHint", {
            missing: a.missingElements.map((m) => label("element", m)).join(t("listSeparator")),
          })
        : "",
    ),
    go,
  );
  return section;
}

function decideForm(a: Appeal, host: CaseHost): HTMLElement {
  const form = element("form", "", {
    class: "decide",
    "aria-labelledby": "appeal-decide-heading",
    novalidate: "",
  });
  const outcome = select(
    [
      [String(AppealOutcome.UPHOLD), t("uphold")],
      [String(AppealOutcome.REJECT), t("reject")],
    ],
    String(AppealOutcome.UPHOLD),
  );
  const ground = element("input", "", { autocomplete: "off" });
  const factsInput = element("textarea", "", { rows: "5" });
  const detection = element("input", "", {
    type: "checkbox",
    "data-draft": "reasons.automated_detection",
  });
  const automated = element("input", "", {
    type: "checkbox",
    "data-draft": "reasons.automated_decision",
  });
  const detectionBox = element("label", "", { class: "check" });
  detectionBox.append(detection, ` ${t("automatedDetection")}`);
  const automatedBox = element("label", "", { class: "check" });
  automatedBox.append(automated, ` ${t("automatedDecisionShort")}`);
  const upName = element("input", "", { autocomplete: "off" });
  const upId = element("input", "", { autocomplete: "off" });
  const upEmail = element("input", "", { type: "email", autocomplete: "off" });
  const upLocale = select(
    [
      ["zh-CN", "中文 (zh-CN)"],
      ["en", "English (en)"],
    ],
    "zh-CN",
  );
  const uploader = group(t("affectedUploader"), "affected_uploader", "appeal-uploader");
  uploader.append(
    field(t("userId"), upId, "affected_uploader.user_id"),
    field(t("legalName"), upName, "affected_uploader.legal_name"),
    field(t("email"), upEmail, "affected_uploader.contact.email"),
    field(t("uploaderLanguage"), upLocale, "affected_uploader.locale"),
  );
  // Upholding a notice names its uploader; so does upholding a claimant's
  // appeal of a rejected notice (the notice is then upheld after all).
  const ofNotice = a.kind === AppealKind.DECISION_APPEAL && a.appealOf.startsWith("appeals/");
  const shape = () => {
    uploader.hidden = !(
      (a.kind === AppealKind.TAKEDOWN_NOTICE || ofNotice) &&
      Number(outcome.value) === AppealOutcome.UPHOLD
    );
  };
  outcome.addEventListener("change", shape);
  shape();
  const submit = element("button", t("decide"), {
    type: "submit",
    class: "primary",
    id: "appeal-decide",
  });
  form.append(
    element("h2", t("decideHeading"), { id: "appeal-decide-heading" }),
    field(t("outcome"), outcome, "outcome"),
    field(t("ground"), ground, "reasons.ground", t("groundHint")),
    field(t("decisionFacts"), factsInput, "reasons.facts"),
    detectionBox,
    automatedBox,
    uploader,
    submit,
  );
  sentByItsButtonOnly(form);
  const deciding = host.retryKey("appeal-decide");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void busy(submit, async () => {
      clearError();
      // On an appeal only when given: the uploader's own appeal names none.
      const withUploader = !uploader.hidden && (!ofNotice || upId.value.trim() !== "");
      const decision = {
        name: a.name,
        etag: a.etag,
        outcome: Number(outcome.value) as AppealOutcome,
        reasons: {
          ground: ground.value.trim(),
          facts: factsInput.value.trim(),
          automatedDetection: detection.checked,
          automatedDecision: automated.checked,
        },
        affectedUploader: withUploader
          ? {
              userId: upId.value.trim(),
              legalName: upName.value.trim(),
              locale: upLocale.value,
              contact: upEmail.value.trim()
                ? { email: upEmail.value.trim(), channels: [Channel.EMAIL] }
                : undefined,
            }
          : undefined,
      };
      const decided = await appeals.decideAppeal({
        ...decision,
        requestId: deciding.for(decision),
      });
      host.sent(form);
      host.ended(
        t("appealDecided", {
          id: shortId(a.name),
          state: label("astate", nameOf(AppealState, decided.state)),
        }),
      );
      await host.reopen();
    });
  });
  return form;
}

function courtAction(a: Appeal, host: CaseHost): HTMLElement {
  const section = element("section", "", { "aria-labelledby": "court-heading" });
  const details = element("textarea", "", { rows: "3" });
  const go = element("button", t("recordCourt"), { type: "button", id: "record-court" });
  const retry = host.retryKey("record-court");
  go.addEventListener(
    "click",
    () =>
      void busy(go, async () => {
        clearError();
        const action = { name: a.name, details: details.value.trim() };
        await appeals.recordCourtAction({ ...action, requestId: retry.for(action) });
        host.sent(section);
        say(t("courtRecorded"));
        await host.reopen();
      }),
  );
  section.append(
    element("h2", t("courtHeading"), { id: "court-heading" }),
    element("p", t("courtNote"), { class: "note" }),
    field(t("courtDetails"), details, "details"),
    go,
  );
  return section;
}

/** A held case ends when the agent records how the court action ended. */
function courtOutcome(a: Appeal, host: CaseHost): HTMLElement {
  const section = element("section", "", { "aria-labelledby": "court-outcome-heading" });
  // Nothing chosen until the agent chooses: the service refuses an outcome
  // left unchosen, naming the field.
  const outcome = select(
    [
      [String(CourtOutcome.UNSPECIFIED), t("choose")],
      [String(CourtOutcome.CONTENT_STAYS_DOWN), t("courtStaysDown")],
      [String(CourtOutcome.CONTENT_RESTORED), t("courtRestored")],
    ],
    String(CourtOutcome.UNSPECIFIED),
  );
  const details = element("textarea", "", { rows: "3" });
  const go = element("button", t("recordCourtOutcome"), {
    type: "button",
    id: "record-court-outcome",
  });
  const retry = host.retryKey("record-court-outcome");
  go.addEventListener(
    "click",
    () =>
      void busy(go, async () => {
        clearError();
        const told = {
          name: a.name,
          outcome: Number(outcome.value) as CourtOutcome,
          details: details.value.trim(),
        };
        const done = await appeals.recordCourtOutcome({ ...told, requestId: retry.for(told) });
        host.sent(section);
        say(t("courtOutcomeRecorded", { state: label("astate", nameOf(AppealState, done.state)) }));
        await host.reopen();
      }),
  );
  section.append(
    element("h2", t("courtOutcomeHeading"), { id: "court-outcome-heading" }),
    element("p", t("courtOutcomeNote"), { class: "note" }),
    field(t("courtOutcome"), outcome, "outcome"),
    field(t("courtOutcomeDetails"), details, "details"),
    go,
  );
  return section;
}
