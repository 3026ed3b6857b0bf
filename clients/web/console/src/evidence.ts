/**
 * Evidence on a case's page. Screenshots (images up to 10 MiB) load at once:
 * they are what agents look at. Videos, PDFs, larger images and anything else
 * load only when the agent asks ("Show", "Download"). The bytes come from
 * `EvidenceService.ReadEvidence` (a server stream, read with the agent's
 * token), are gathered into a Blob (`BlobGatherer`: a long video is not
 * also held as an array of chunks) and shown through an object URL (the
 * page's content security policy allows blob: for images, media and frames;
 * Chromium shows a blob: PDF in a frame with its own viewer).
 *
 * What is read belongs to the case on screen: when that case is drawn again
 * (after an action, a reload) its evidence is reused, not read again; leaving
 * the case cancels the reads still running and revokes the object URLs.
 */

import {
  BlobGatherer,
  Code,
  ConnectError,
  type Evidence,
  errorMessage,
  unreachable,
} from "@casemesh/client";

import { evidence } from "./api";
import { element, say, t } from "./ui";

/** Images up to this size load with the page; larger ones wait for "Show". */
const INLINE_IMAGE_BYTES = 10 * 1024 * 1024;

/** The evidence read for the case on screen: metadata and object URLs, by evidence name. */
class Shelf {
  readonly stop = new AbortController();
  readonly meta = new Map<string, Promise<Evidence>>();
  readonly bytes = new Map<string, Promise<string>>();
  readonly urls: string[] = [];

  /** A read shared by every figure of the same evidence; a failed one may be tried again. */
  private once<T>(cache: Map<string, Promise<T>>, name: string, read: () => Promise<T>) {
    let found = cache.get(name);
    if (!found) {
      found = read();
      cache.set(name, found);
      const mine = found;
      found.catch(() => {
        if (cache.get(name) === mine) cache.delete(name);
      });
    }
    return found;
  }

  metaOf(name: string): Promise<Evidence> {
    return this.once(this.meta, name, () =>
      evidence.getEvidence({ name }, { signal: this.stop.signal }),
    );
  }

  urlOf(name: string, meta: Evidence): Promise<string> {
    return this.once(this.bytes, name, async () => {
      const read = new BlobGatherer();
      for await (const part of evidence.readEvidence({ name }, { signal: this.stop.signal })) {
        read.add(part.chunk);
        reading(name, meta, read.bytes);
      }
      const url = URL.createObjectURL(read.blob(meta.mediaType));
      if (this.stop.signal.aborted) {
        URL.revokeObjectURL(url);
        throw new ConnectError("the case was left", Code.Canceled);
      }
      this.urls.push(url);
      return url;
    });
  }

  /** Whether the bytes are read or being read (a figure drawn again shows them at once). */
  asked(name: string): boolean {
    return this.bytes.has(name);
  }

  forget(): void {
    this.stop.abort();
    for (const url of this.urls) URL.revokeObjectURL(url);
  }
}

let shelf = new Shelf();

/** The shelf of the case on screen now (its previews are read into it and forgotten with it). */
export function shelfNow(): Shelf {
  return shelf;
}

/** The agent left the case on screen: stop reading its evidence and free what was read. */
export function forgetPreviews(): void {
  shelf.forget();
  shelf = new Shelf();
}

type Kind = "image" | "video" | "pdf" | "file";

function kindOf(meta: Evidence): Kind {
  // HEIC is accepted evidence, but Chromium and Firefox do not show it: a file to download.
  if (meta.mediaType.startsWith("image/") && meta.mediaType !== "image/heic") return "image";
  if (meta.mediaType.startsWith("video/")) return "video";
  if (meta.mediaType === "application/pdf") return "pdf";
  return "file";
}

/**
 * The file-name extensions of the types the evidence service accepts (known
 * by their bytes, never by their names: `sniff.py`), the usual one first.
 */
const EXTENSIONS: Readonly<Record<string, readonly [string, ...string[]]>> = {
  "image/png": ["png"],
  "image/jpeg": ["jpg", "jpeg"],
  "image/gif": ["gif"],
  "image/webp": ["webp"],
  "image/heic": ["heic", "heif"],
  "image/avif": ["avif"],
  "video/mp4": ["mp4", "m4v"],
  "video/quicktime": ["mov", "qt"],
  // Matroska is taken as WebM, which is a profile of it.
  "video/webm": ["webm", "mkv"],
  "video/3gpp": ["3gp"],
  "video/3gpp2": ["3g2"],
  "application/pdf": ["pdf"],
};

/** Where a name's last extension starts (its dot), or -1 when it has none. */
function extensionAt(name: string): number {
  const dot = name.lastIndexOf(".");
  return dot > 0 && /^[A-Za-z0-9]{1,16}$/.test(name.slice(dot + 1)) ? dot : -1;
}

/**
 * The name evidence is saved under: the uploader's, ending in an extension of
 * the type its bytes are. The name is the uploader's (or a mail sender's) to
 * choose, and its extension decides what opens the file on the agent's
 * computer: a PDF named `statement.html` would open in a browser and run its
 * scripts, one named `.hta` with the agent's rights. So a wrong last
 * extension is replaced (`statement.html` → `statement.pdf`), or dropped when
 * what is left already ends in a right one (`photo.png.bat` → `photo.png`);
 * a name without one gains it (`scan` → `scan.pdf`). A type this page does
 * not know yet is saved as `.bin`, which nothing opens by itself.
 */
export function savedName(name: string, mediaType: string): string {
  const right = EXTENSIONS[mediaType] ?? ["bin"];
  const endsRight = (n: string, at: number) =>
    at >= 0 && right.includes(n.slice(at + 1).toLowerCase());
  const last = extensionAt(name);
  if (endsRight(name, last)) return name;
  const stem = last >= 0 ? name.slice(0, last) : name;
  return endsRight(stem, extensionAt(stem)) ? stem : `${stem}.${right[0]}`;
}

function size(bytes: number): string {
  return bytes >= 1024 * 1024
    ? `${(bytes / 1024 / 1024).toFixed(1)} MB`
    : `${Math.ceil(bytes / 1024)} KB`;
}

/**
 * A figure for one piece of evidence: filled at once for a screenshot, else
 * offering "Show" (video, PDF, a large image) and "Download".
 */
export function preview(name: string, mine: Shelf): HTMLElement {
  const figure = element("figure", "", { class: "evidence", "data-evidence": name });
  const caption = element("figcaption", t("loadingEvidence"));
  figure.append(caption);
  void offer(mine, name, figure, caption);
  return figure;
}

async function offer(
  mine: Shelf,
  name: string,
  figure: HTMLElement,
  caption: HTMLElement,
): Promise<void> {
  let meta: Evidence;
  try {
    meta = await mine.metaOf(name);
  } catch (err) {
    failed(mine, name, figure, caption, err);
    return;
  }
  const label = meta.fileName || name;
  const described = `${label} · ${meta.mediaType} · ${size(Number(meta.sizeBytes))}`;
  caption.textContent = described;
  const kind = kindOf(meta);
  const inline = kind === "image" && Number(meta.sizeBytes) <= INLINE_IMAGE_BYTES;
  if (inline || mine.asked(name)) {
    await show(mine, name, meta, figure, caption, described);
    return;
  }
  figure.dataset.state = "offered";
  const actions = element("div", "", { class: "evidence-actions" });
  if (kind !== "file") {
    const showIt = element("button", t("showEvidence", { name: label }), { type: "button" });
    showIt.addEventListener(
      "click",
      () => void show(mine, name, meta, figure, caption, described, "show"),
    );
    actions.append(showIt);
  }
  const save = element("button", t("download", { name: savedName(label, meta.mediaType) }), {
    type: "button",
  });
  save.addEventListener(
    "click",
    () => void show(mine, name, meta, figure, caption, described, "download"),
  );
  actions.append(save);
  figure.append(actions);
}

/**
 * Reads the bytes (once per case), then shows them; `asked`: the agent
 * pressed "Show" or "Download" (else the figure fills by itself).
 */
async function show(
  mine: Shelf,
  name: string,
  meta: Evidence,
  figure: HTMLElement,
  caption: HTMLElement,
  described: string,
  asked?: "show" | "download",
): Promise<void> {
  for (const b of figure.querySelectorAll("button")) b.disabled = true;
  figure.dataset.state = "loading";
  let url: string;
  try {
    url = await mine.urlOf(name, meta);
  } catch (err) {
    failed(mine, name, figure, caption, err);
    return;
  }
  const label = meta.fileName || name;
  caption.textContent = described;
  // The button pressed goes with the other actions: the focus, if still on
  // it (or dropped to the page), follows to what it showed.
  const focused = document.activeElement;
  const follow =
    asked !== undefined && (!focused || focused === document.body || figure.contains(focused));
  figure.querySelector(".evidence-actions")?.remove();
  const kind = kindOf(meta);
  const alt = t("evidenceAlt", { name: label });
  let shown: HTMLElement | undefined;
  if (kind === "image") {
    shown = element("img", "", { src: url, alt });
  } else if (kind === "video") {
    shown = element("video", "", { src: url, controls: "", preload: "metadata" });
    shown.setAttribute("aria-label", alt);
  } else if (kind === "pdf") {
    // Not sandboxed: Chromium opens no PDF viewer in a sandboxed frame. Only
    // bytes the service found to be a PDF come here, typed as one.
    shown = element("iframe", "", { src: url, title: alt });
  }
  const saved = savedName(label, meta.mediaType);
  const link = element("a", t("download", { name: saved }), { href: url, download: saved });
  if (shown) figure.prepend(shown);
  // Kept beside what is shown: a PDF or a video is often wanted as a file.
  if (kind !== "image") figure.append(link);
  figure.dataset.state = "shown";
  if (asked === "download") link.click();
  if (asked === undefined) return;
  // What the agent's press brought: the link for a download (an image has
  // none: the image), else what is shown; said too, for a screen reader.
  const brought = asked === "download" && link.isConnected ? link : (shown ?? link);
  if (!brought.matches("a[href], video[controls], iframe")) brought.tabIndex = -1;
  if (follow) brought.focus();
  say(t(asked === "download" ? "evidenceDownloading" : "evidenceShown", { name: label }));
}

/** How far a read has come, on every figure waiting for it (one drawn again meanwhile too). */
function reading(name: string, meta: Evidence, read: number): void {
  const total = Number(meta.sizeBytes);
  const percent = total ? Math.min(100, Math.floor((read / total) * 100)) : 100;
  const selector = `figure[data-evidence="${CSS.escape(name)}"][data-state="loading"] figcaption`;
  for (const caption of document.querySelectorAll(selector)) {
    caption.textContent = t("readingEvidence", { name: meta.fileName || name, percent });
  }
}

function failed(
  mine: Shelf,
  name: string,
  figure: HTMLElement,
  caption: HTMLElement,
  err: unknown,
): void {
  if (mine.stop.signal.aborted) return; // the agent left the case: nothing to tell
  // In the page's language: the service's words, or that it could not be reached.
  const reason = unreachable(err) ? t("unreachable") : errorMessage(err);
  caption.textContent = t("evidenceFailed", { name, reason });
  figure.dataset.state = "failed";
  for (const b of figure.querySelectorAll("button")) b.disabled = false;
}
