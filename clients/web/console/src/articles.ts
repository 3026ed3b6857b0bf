/**
 * The help centre's articles, for admins: open one (any state), write a draft
 * (a new article, or a new version of one, guarded by the version the editor
 * read), preview it as users will read it, and publish it.
 */

import { type Article, ArticleState, Code, ConnectError } from "@casemesh/client";

import { help, tickets } from "./api";
import {
  $,
  agreesToLeave,
  busy,
  clearError,
  element,
  locale,
  onReload,
  RetryKey,
  say,
  t,
} from "./ui";

/** The article in the editor as last read or saved (undefined: a new one). */
let current: Article | undefined;
let categories: { id: string; labels: Record<string, string> }[] = [];

const value = (id: string) => $<HTMLInputElement>(id).value.trim();

export async function prepareArticles(): Promise<void> {
  if (!categories.length) {
    categories = (await tickets.listTicketCategories({})).categories;
  }
  renderArticleLabels();
}

export function renderArticleLabels(): void {
  const select = $<HTMLSelectElement>("article-category");
  const chosen = select.value;
  select.replaceChildren(
    ...categories.map((c) => element("option", c.labels[locale] ?? c.id, { value: c.id })),
  );
  select.value = chosen;
  renderState();
}

function name(): string {
  const slug = value("article-slug");
  return slug.startsWith("articles/") ? slug : `articles/${slug}`;
}

function renderState(): void {
  const state = $("article-state");
  if (!current) {
    state.textContent = t("articleNew");
    return;
  }
  state.textContent = t("articleState", {
    state: t(current.state === ArticleState.PUBLISHED ? "articlePublished" : "articleDraft"),
    version: current.latestVersion || current.version,
    published: current.publishedVersion || "—",
  });
  state.dataset.state = ArticleState[current.state] ?? "UNSPECIFIED";
}

/** Forgets the article in the editor (on sign-out: it is not the next agent's). */
export function forgetArticle(): void {
  current = undefined;
  $<HTMLFormElement>("article-form").reset();
  $("article-preview").replaceChildren();
  $("article-preview").hidden = true;
  renderState();
}

function fill(article: Article): void {
  current = article;
  $<HTMLInputElement>("article-slug").value = article.name;
  $<HTMLSelectElement>("article-locale").value = article.locale;
  $<HTMLSelectElement>("article-category").value = article.category;
  $<HTMLInputElement>("article-title").value = article.title;
  $<HTMLTextAreaElement>("article-body").value = article.body;
  $<HTMLInputElement>("article-keywords").value = article.keywords;
  renderState();
}

/** The article as users will read it: its title and its paragraphs. */
function preview(): void {
  const shown = $("article-preview");
  shown.replaceChildren(
    element("h3", value("article-title")),
    ...$<HTMLTextAreaElement>("article-body")
      .value.split(/\n{2,}/)
      .filter((p) => p.trim())
      .map((p) => element("p", p.trim())),
  );
  shown.hidden = false;
}

/** The article the form names, at its latest version (the one a new version builds on). */
async function latest(): Promise<Article> {
  const asked = { name: name(), locale: $<HTMLSelectElement>("article-locale").value };
  const article = await help.getArticle(asked);
  // A published article may have a newer draft: that is what the editor works on.
  return article.latestVersion > article.version
    ? help.getArticle({ ...asked, version: article.latestVersion })
    : article;
}

/**
 * Whether the article in the editor may be put aside: asked first when what
 * is written differs from what was read or saved (a new article: anything
 * written but its name and language, which say what to open).
 */
async function mayDropEdits(): Promise<boolean> {
  const form = written();
  const was = current ?? { category: form.category, title: "", body: "", keywords: "" };
  const edited = (["category", "title", "body", "keywords"] as const).some(
    (field) => form[field] !== was[field],
  );
  return !edited || agreesToLeave($<HTMLDialogElement>("article-discard-dialog"));
}

async function open(): Promise<void> {
  clearError();
  if (!(await mayDropEdits())) return;
  const article = await latest();
  fill(article);
  preview();
  say(t("articleOpened", { title: article.title }));
}

/** The article as the form has it, as a save sends it. */
function written() {
  return {
    name: name(),
    locale: $<HTMLSelectElement>("article-locale").value,
    category: $<HTMLSelectElement>("article-category").value,
    title: value("article-title"),
    body: $<HTMLTextAreaElement>("article-body").value.trim(),
    keywords: value("article-keywords"),
  };
}

// A save sent again after a lost answer lands once (see RetryKey).
const saving = new RetryKey();

async function save(): Promise<void> {
  clearError();
  const article = written();
  const known = current && current.name === article.name && current.locale === article.locale;
  const baseVersion = known ? (current?.version ?? 0) : undefined;
  const requestId = saving.for({ article, baseVersion });
  let saved: Article;
  try {
    saved =
      baseVersion !== undefined
        ? await help.updateArticle({ article, baseVersion, requestId })
        : await help.createArticle({ article, requestId });
  } catch (err) {
    // Someone else saved a version since this one was read: "Reload" reads
    // theirs and keeps what the admin typed, to be saved on top of it.
    if (ConnectError.from(err).code === Code.Aborted) onReload(rebase);
    throw err;
  }
  saving.done();
  fill(saved);
  preview();
  say(t("articleSaved", { version: saved.latestVersion || saved.version }));
}

/**
 * After someone else's change: the latest version becomes the one the next
 * save builds on (a new base version, so a new request id); the form keeps
 * what the admin typed.
 */
async function rebase(): Promise<void> {
  current = await latest();
  renderState();
  onReload(undefined);
  say(t("draftsKept"));
}

async function publish(): Promise<void> {
  clearError();
  if (!current) {
    throw new ConnectError(t("articleSaveFirst"), Code.FailedPrecondition);
  }
  // Publishing puts the saved version on screen: edits made since would be
  // lost under it, and are not what would be published. They stay to be saved.
  const form = written();
  const saved = current;
  if (Object.entries(form).some(([field, v]) => saved[field as keyof typeof form] !== v)) {
    throw new ConnectError(t("articleUnsavedEdits"), Code.FailedPrecondition);
  }
  // The version in the editor, not whatever is latest by now.
  const published = await help.publishArticle({
    name: current.name,
    locale: current.locale,
    version: current.version,
  });
  fill(published);
  say(t("articlePublishedNow", { title: published.title }));
}

$("article-new").addEventListener(
  "click",
  () =>
    void busy($<HTMLButtonElement>("article-new"), async () => {
      if (!(await mayDropEdits())) return;
      current = undefined;
      ($("article-form") as HTMLFormElement).reset();
      $("article-preview").hidden = true;
      renderState();
    }),
);
$("article-open").addEventListener(
  "click",
  () => void busy($<HTMLButtonElement>("article-open"), open),
);
$("article-preview-button").addEventListener("click", preview);
$("article-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void busy($("article-form").querySelector<HTMLButtonElement>("button[type=submit]"), save);
});
$("article-publish").addEventListener(
  "click",
  () => void busy($<HTMLButtonElement>("article-publish"), publish),
);
