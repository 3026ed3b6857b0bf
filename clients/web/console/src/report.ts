/**
 * A report case: its target, the reports on it grouped by reason (with the
 * count of distinct reporters), the triage figures, and the decision with a
 * statement of reasons in the DSA Transparency Database's fields; once
 * decided, the restrictions it imposes and the appeals lodged against it.
 */

import {
  AccountType,
  AutomatedDecision,
  Channel,
  ContentType,
  DecisionAccount,
  DecisionGround,
  DecisionMonetary,
  DecisionProvision,
  DecisionVisibility,
  QueueLane,
  type Report,
  type ReportCase,
  ReportCaseState,
  ReportDecisionOutcome,
  type ReportReason,
  ReportSource,
  readPages,
  StatementCategory,
  TargetType,
} from "@casemesh/client";

import { reports } from "./api";
import { choices, endOfDay, label, list, nameOf } from "./dsa";
import {
  busy,
  type CaseHost,
  checkboxes,
  checked,
  clearError,
  element,
  facts,
  field,
  group,
  locale,
  select,
  sentByItsButtonOnly,
  shortId,
  t,
  when,
} from "./ui";

let reasons: ReportReason[] = [];

export async function openReportCase(name: string, host: CaseHost): Promise<void> {
  if (!reasons.length) {
    reasons = (await reports.listReportReasons({})).reasons;
  }
  let found = await reports.getReportCase({ name });
  if (found.state === ReportCaseState.OPEN && host.holds(name)) {
    // Holding it in the queue means reviewing it: the case says so too.
    found = await reports.assignReportCase({ name });
  }
  render(found, await reportsOf(name), host);
}

/** The most reports a case's page reads (ten pages): past that it says how many it shows. */
const REPORTS_READ = 1000;

/** The case's reports, page after page, up to REPORTS_READ. */
async function reportsOf(reportCase: string): Promise<Report[]> {
  return readPages(async (pageToken) => {
    const page = await reports.listReports({ reportCase, pageSize: 100, pageToken });
    return { items: page.reports, next: page.nextPageToken };
  }, REPORTS_READ);
}

function reasonLabel(category: string, subcategory: string): string {
  const r = reasons.find((x) => x.category === category && x.subcategory === subcategory);
  if (!r) return `${category} / ${subcategory}`;
  return locale === "en" ? r.labelEn : r.labelZh;
}

function render(c: ReportCase, filed: Report[], host: CaseHost): void {
  host.heading(t("reportHeading", { id: shortId(c.name) }));
  const target = c.target;
  const distinct = new Set(filed.map((r) => r.reporter)).size;
  const state = element("span", label("rcstate", nameOf(ReportCaseState, c.state)), {
    id: "case-state",
    "data-state": nameOf(ReportCaseState, c.state),
  });
  const summary = facts([
    [t("caseState"), state],
    [
      t("target"),
      `${label("target", nameOf(TargetType, target?.type ?? 0))} ${target?.id ?? ""} ${target?.url ?? ""}`.trim(),
    ],
    [t("category"), c.category],
    [t("lane"), label("lane", nameOf(QueueLane, c.lane))],
    [t("triagePriority"), c.priority.toFixed(1)],
    [t("reporterCount"), String(c.reporterCount)],
    [t("distinctReporters"), element("span", String(distinct), { id: "distinct-reporters" })],
    [t("trustedFlagger"), c.trustedFlagger ? t("yes") : t("no")],
    [t("firstReport"), when(c.firstReportTime)],
    [t("assignee"), c.assignee || t("nobody")],
  ]);

  // The reports, grouped by the reason each reporter chose.
  const groups = new Map<string, Report[]>();
  for (const r of filed) {
    const key = reasonLabel(r.reason?.category ?? "", r.reason?.subcategory ?? "");
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const reportsSection = element("section", "", { "aria-labelledby": "reports-heading" });
  reportsSection.append(
    element("h2", t("reportsHeading", { count: c.reporterCount }), { id: "reports-heading" }),
  );
  if (filed.length < c.reporterCount) {
    reportsSection.append(
      element("p", t("reportsShown", { shown: filed.length, count: c.reporterCount }), {
        class: "note",
      }),
    );
  }
  for (const [reason, members] of groups) {
    const group = element("section", "", { class: "report-group" });
    group.append(element("h3", `${reason} (${members.length})`));
    const items = element("ol", "", { class: "history" });
    for (const r of members) {
      const item = element("li", "", { "data-report": r.name });
      item.append(
        when(r.createTime),
        " ",
        element("strong", r.reporter),
        element("span", ` · ${label("source", nameOf(ReportSource, r.source))} · ${r.locale}`, {
          class: "meta",
        }),
        element("p", r.explanation, { class: "text" }),
      );
      if (r.evidence.length) {
        const shown = element("div", "", { class: "previews" });
        shown.append(...r.evidence.map((ref) => host.preview(ref.name)));
        item.append(shown);
      }
      items.append(item);
    }
    group.append(items);
    reportsSection.append(group);
  }

  const main = element("div", "", { class: "main-col" });
  const side = element("div", "", { class: "side-col" });
  main.append(reportsSection);
  side.append(summary);
  if (
    c.decision &&
    (c.state === ReportCaseState.ACTION_TAKEN ||
      c.state === ReportCaseState.NO_VIOLATION ||
      c.state === ReportCaseState.REVERSED)
  ) {
    side.append(decided(c));
  }
  if (c.state === ReportCaseState.OPEN || c.state === ReportCaseState.IN_REVIEW) {
    main.append(decideForm(c, filed, host));
  }
  const columns = element("div", "", { class: "columns" });
  columns.append(main, side);
  host.draw(columns);
}

/** The decision as made: its restrictions, facts, redress, and the appeals against it. */
function decided(c: ReportCase): HTMLElement {
  const d = c.decision!;
  const section = element("section", "", { "aria-labelledby": "decision-heading" });
  section.append(element("h2", t("decisionHeading"), { id: "decision-heading" }));
  const r = d.restrictions;
  // "Other" with the words the agent gave it.
  const said = (kind: string, other = "") => (other ? t("otherSaid", { kind, other }) : kind);
  const imposed: string[] = [
    ...(r?.visibility ?? []).map((v) =>
      said(
        label("vis", nameOf(DecisionVisibility, v)),
        v === DecisionVisibility.OTHER ? r?.visibilityOther : "",
      ),
    ),
    ...(r?.monetary
      ? [
          said(
            label("mon", nameOf(DecisionMonetary, r.monetary)),
            r.monetary === DecisionMonetary.OTHER ? r.monetaryOther : "",
          ),
        ]
      : []),
    ...(r?.provision ? [label("prov", nameOf(DecisionProvision, r.provision))] : []),
    ...(r?.account ? [label("acct", nameOf(DecisionAccount, r.account))] : []),
  ];
  const restrictions = element("ul", "", { id: "restrictions" });
  restrictions.append(
    ...(imposed.length ? imposed : [t("noRestrictions")]).map((x) => element("li", x)),
  );
  const appealList = element("ul");
  appealList.append(
    ...(c.appeals.length
      ? c.appeals.map((a) => {
          const li = element("li");
          li.append(element("a", shortId(a), { href: `#${a}` }));
          return li;
        })
      : [element("li", t("noAppeals"))]),
  );
  section.append(
    facts([
      [t("restrictionsImposed"), restrictions],
      [t("decisionFacts"), element("p", d.decisionFacts, { class: "text" })],
      [t("statementCategory"), label("cat", nameOf(StatementCategory, d.category))],
      [t("sourceType"), d.sourceType],
      [t("redress"), d.redress],
      [t("appealDeadline"), when(d.appealDeadline)],
      [t("decided"), when(c.decideTime)],
      [t("affectedUploader"), c.affectedUploader?.userId ?? "—"],
      [t("linkedAppeals"), appealList],
    ]),
  );
  return section;
}

function textInput(value = ""): HTMLInputElement {
  const made = element("input", "", { autocomplete: "off" });
  made.value = value;
  return made;
}

/** Today's date where the agent is (YYYY-MM-DD), as the service reads it. */
function localToday(): string {
  const now = new Date();
  return new Date(now.getTime() - now.getTimezoneOffset() * 60_000).toISOString().slice(0, 10);
}

function dateInput(value = ""): HTMLInputElement {
  const made = element("input", "", { type: "date" });
  made.value = value;
  return made;
}

function area(rows = 3): HTMLTextAreaElement {
  return element("textarea", "", { rows: String(rows) });
}

/** The statement of reasons (DSA), shaped by the outcome and the ground chosen. */
function decideForm(c: ReportCase, filed: Report[], host: CaseHost): HTMLElement {
  const form = element("form", "", {
    class: "decide",
    "aria-labelledby": "decide-heading",
    novalidate: "",
  });
  form.append(element("h2", t("decideHeading"), { id: "decide-heading" }));
  const reason = reasons.find(
    (r) =>
      r.category === filed[0]?.reason?.category && r.subcategory === filed[0]?.reason?.subcategory,
  );

  const outcome = select(
    [
      [String(ReportDecisionOutcome.ACTION_TAKEN), t("outcomeActionTaken")],
      [String(ReportDecisionOutcome.NO_VIOLATION), t("outcomeNoViolation")],
    ],
    String(ReportDecisionOutcome.ACTION_TAKEN),
  );
  const ground = select(
    [["0", t("choose")], ...choices(DecisionGround, "ground")],
    String(DecisionGround.INCOMPATIBLE_CONTENT),
  );
  const legalGround = textInput();
  const legalExplanation = area();
  const incompatibleGround = textInput();
  const incompatibleExplanation = area();
  const alsoIllegal = element("input", "", {
    type: "checkbox",
    "data-draft": "statement.incompatible_content_illegal",
  });
  const category = select(
    [["0", t("categoryFromReason")], ...choices(StatementCategory, "cat")],
    String(reason?.statementCategory ?? 0),
  );
  const keywords = textInput(reason?.keyword ?? "");
  const contentTypes = checkboxes(
    t("contentType"),
    choices(ContentType, "ctype"),
    "statement.content_type",
    [String(ContentType.VIDEO)],
  );
  // "Other" is said in words: the service requires them with it.
  const contentTypeOther = textInput();
  const contentDate = dateInput();
  // Restrictions take effect when the decision is recorded: the service takes
  // only today (somewhere), so the picker offers today where the agent is.
  const applicationDate = dateInput(localToday());
  applicationDate.min = applicationDate.max = localToday();
  const decisionFacts = area(5);
  const automatedDetection = element("input", "", {
    type: "checkbox",
    "data-draft": "statement.automated_detection",
  });
  const automatedDecision = select(
    choices(AutomatedDecision, "auto"),
    String(AutomatedDecision.NOT_AUTOMATED),
  );
  const visibility = checkboxes(
    t("visibility"),
    choices(DecisionVisibility, "vis"),
    "statement.restrictions.visibility",
  );
  const visibilityOther = textInput();
  const visibilityEnd = dateInput();
  const monetary = select([["0", t("none")], ...choices(DecisionMonetary, "mon")], "0");
  const monetaryOther = textInput();
  const monetaryEnd = dateInput();
  const provision = select([["0", t("none")], ...choices(DecisionProvision, "prov")], "0");
  const provisionEnd = dateInput();
  const account = select([["0", t("none")], ...choices(DecisionAccount, "acct")], "0");
  const accountEnd = dateInput();
  const territory = textInput();
  const language = textInput("zh");
  const accountType = select([["0", t("unknown")], ...choices(AccountType, "atype")], "0");
  const uploaderId = textInput(c.target?.type === TargetType.ACCOUNT ? (c.target.id ?? "") : "");
  const uploaderName = textInput();
  const uploaderEmail = element("input", "", { type: "email", autocomplete: "off" });
  const uploaderLocale = select(
    [
      ["zh-CN", "中文 (zh-CN)"],
      ["en", "English (en)"],
    ],
    "zh-CN",
  );
  const unfounded = checkboxes(
    t("unfounded"),
    filed.map((r): [string, string] => [r.name, `${r.reporter} (${shortId(r.name)})`]),
    "manifestly_unfounded_reports",
  );

  const illegalPart = element("div", "", { class: "group" });
  illegalPart.append(
    field(t("legalGround"), legalGround, "statement.illegal_content_legal_ground"),
    field(t("legalExplanation"), legalExplanation, "statement.illegal_content_explanation"),
  );
  const incompatiblePart = element("div", "", { class: "group" });
  const illegalBox = element("label", "", { class: "check" });
  illegalBox.append(alsoIllegal, ` ${t("alsoIllegal")}`);
  incompatiblePart.append(
    field(t("incompatibleGround"), incompatibleGround, "statement.incompatible_content_ground"),
    field(
      t("incompatibleExplanation"),
      incompatibleExplanation,
      "statement.incompatible_content_explanation",
    ),
    illegalBox,
  );
  const detectionBox = element("label", "", { class: "check" });
  detectionBox.append(automatedDetection, ` ${t("automatedDetection")}`);

  const contentTypeOtherField = field(
    t("contentTypeOther"),
    contentTypeOther,
    "statement.content_type_other",
  );

  const actionPart = element("div", "", { class: "group" });
  const visibilityOtherField = field(
    t("visibilityOther"),
    visibilityOther,
    "statement.restrictions.visibility_other",
  );
  const monetaryOtherField = field(
    t("monetaryOther"),
    monetaryOther,
    "statement.restrictions.monetary_other",
  );
  const restrictions = group(
    t("restrictionsImposed"),
    "statement.restrictions",
    "restrictions-fieldset",
  );
  restrictions.append(
    visibility,
    visibilityOtherField,
    field(t("visibilityEnd"), visibilityEnd, "statement.restrictions.visibility_end_time"),
    field(t("monetary"), monetary, "statement.restrictions.monetary"),
    monetaryOtherField,
    field(t("monetaryEnd"), monetaryEnd, "statement.restrictions.monetary_end_time"),
    field(t("provision"), provision, "statement.restrictions.provision"),
    field(t("provisionEnd"), provisionEnd, "statement.restrictions.provision_end_time"),
    field(t("account"), account, "statement.restrictions.account"),
    field(t("accountEnd"), accountEnd, "statement.restrictions.account_end_time"),
  );
  const uploader = group(t("affectedUploader"), "affected_uploader", "uploader-fieldset");
  uploader.append(
    field(t("userId"), uploaderId, "affected_uploader.user_id"),
    field(t("legalName"), uploaderName, "affected_uploader.legal_name"),
    field(t("email"), uploaderEmail, "affected_uploader.contact.email"),
    field(t("uploaderLanguage"), uploaderLocale, "affected_uploader.locale"),
  );
  actionPart.append(
    field(t("decisionGround"), ground, "statement.decision_ground"),
    illegalPart,
    incompatiblePart,
    field(t("statementCategory"), category, "statement.category"),
    field(t("keywords"), keywords, "statement.category_specification", t("keywordsHint")),
    contentTypes,
    contentTypeOtherField,
    field(t("contentDate"), contentDate, "statement.content_date"),
    field(t("applicationDate"), applicationDate, "statement.application_date"),
    detectionBox,
    field(t("automatedDecision"), automatedDecision, "statement.automated_decision"),
    restrictions,
    field(t("territory"), territory, "statement.territorial_scope", t("territoryHint")),
    field(t("contentLanguage"), language, "statement.content_language"),
    field(t("accountType"), accountType, "statement.account_type"),
    uploader,
  );
  const noViolationPart = element("div", "", { class: "group" });
  noViolationPart.append(unfounded);

  const otherType = () => checked(contentTypes).includes(String(ContentType.OTHER));
  const otherVisibility = () => checked(visibility).includes(String(DecisionVisibility.OTHER));
  const otherMonetary = () => Number(monetary.value) === DecisionMonetary.OTHER;
  const shape = () => {
    const action = Number(outcome.value) === ReportDecisionOutcome.ACTION_TAKEN;
    actionPart.hidden = !action;
    noViolationPart.hidden = action;
    illegalPart.hidden = Number(ground.value) !== DecisionGround.ILLEGAL_CONTENT;
    incompatiblePart.hidden = Number(ground.value) !== DecisionGround.INCOMPATIBLE_CONTENT;
    contentTypeOtherField.hidden = !otherType();
    visibilityOtherField.hidden = !otherVisibility();
    monetaryOtherField.hidden = !otherMonetary();
  };
  for (const control of [outcome, ground, contentTypes, visibility, monetary]) {
    control.addEventListener("change", shape);
  }

  const submit = element("button", t("decide"), { type: "submit", id: "decide", class: "primary" });
  form.append(
    field(t("outcome"), outcome, "outcome"),
    field(t("decisionFacts"), decisionFacts, "statement.decision_facts", t("decisionFactsHint")),
    actionPart,
    noViolationPart,
    submit,
  );
  shape();

  sentByItsButtonOnly(form);
  const deciding = host.retryKey("decide");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void busy(submit, async () => {
      clearError();
      const action = Number(outcome.value) === ReportDecisionOutcome.ACTION_TAKEN;
      // Each ground's words go only with that ground, as "Other"'s do: what
      // the agent wrote under the ground they turned from is not the reason
      // the uploader and the reporters are given.
      const illegal = Number(ground.value) === DecisionGround.ILLEGAL_CONTENT;
      const incompatible = Number(ground.value) === DecisionGround.INCOMPATIBLE_CONTENT;
      const decision = {
        name: c.name,
        etag: c.etag,
        outcome: Number(outcome.value) as ReportDecisionOutcome,
        manifestlyUnfoundedReports: action ? [] : checked(unfounded),
        affectedUploader: action
          ? {
              userId: uploaderId.value.trim(),
              legalName: uploaderName.value.trim(),
              locale: uploaderLocale.value,
              contact: uploaderEmail.value.trim()
                ? { email: uploaderEmail.value.trim(), channels: [Channel.EMAIL] }
                : undefined,
            }
          : undefined,
        statement: action
          ? {
              decisionGround: Number(ground.value) as DecisionGround,
              illegalContentLegalGround: illegal ? legalGround.value.trim() : "",
              illegalContentExplanation: illegal ? legalExplanation.value.trim() : "",
              incompatibleContentGround: incompatible ? incompatibleGround.value.trim() : "",
              incompatibleContentExplanation: incompatible
                ? incompatibleExplanation.value.trim()
                : "",
              incompatibleContentIllegal: incompatible && alsoIllegal.checked,
              category: Number(category.value) as StatementCategory,
              categorySpecification: list(keywords.value),
              contentType: checked(contentTypes).map((v) => Number(v) as ContentType),
              contentTypeOther: otherType() ? contentTypeOther.value.trim() : "",
              contentDate: contentDate.value,
              applicationDate: applicationDate.value,
              decisionFacts: decisionFacts.value.trim(),
              automatedDetection: automatedDetection.checked,
              automatedDecision: Number(automatedDecision.value) as AutomatedDecision,
              restrictions: {
                visibility: checked(visibility).map((v) => Number(v) as DecisionVisibility),
                visibilityOther: otherVisibility() ? visibilityOther.value.trim() : "",
                visibilityEndTime: endOfDay(visibilityEnd.value),
                monetary: Number(monetary.value) as DecisionMonetary,
                monetaryOther: otherMonetary() ? monetaryOther.value.trim() : "",
                monetaryEndTime: endOfDay(monetaryEnd.value),
                provision: Number(provision.value) as DecisionProvision,
                provisionEndTime: endOfDay(provisionEnd.value),
                account: Number(account.value) as DecisionAccount,
                accountEndTime: endOfDay(accountEnd.value),
              },
              territorialScope: list(territory.value).map((x) => x.toUpperCase()),
              contentLanguage: language.value.trim(),
              accountType: Number(accountType.value) as AccountType,
            }
          : { decisionFacts: decisionFacts.value.trim() },
      };
      const decided = await reports.decideReportCase({
        ...decision,
        requestId: deciding.for(decision),
      });
      host.sent(form);
      // Every reporter is told, those past the reports read too.
      const told = Math.max(c.reporterCount, new Set(filed.map((r) => r.reporter)).size);
      host.ended(
        t("reportDecided", {
          id: shortId(decided.name),
          outcome: label("rcstate", nameOf(ReportCaseState, decided.state)),
          count: told,
        }),
      );
      await host.reopen();
    });
  });
  return form;
}
