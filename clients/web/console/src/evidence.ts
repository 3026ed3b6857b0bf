/**
 * Evidence shown inline: the bytes come from `EvidenceService.ReadEvidence`
 * (a server stream, read with the agent's token), become a Blob and an object
 * URL, and are shown as an image, a video or a PDF in a frame (the page's
 * content security policy allows blob: for exactly these).
 */

import { ConnectError } from "@casemesh/client";

import { evidence } from "./api";
import { element, t } from "./ui";

// Object URLs of the case on screen, revoked when another is shown.
let urls: string[] = [];

export function forgetPreviews(): void {
  for (const url of urls) URL.revokeObjectURL(url);
  urls = [];
}

/** A figure that fills itself with the evidence once its bytes have arrived. */
export function preview(name: string): HTMLElement {
  const figure = element("figure", "", { class: "evidence", "data-evidence": name });
  const caption = element("figcaption", t("loadingEvidence"));
  figure.append(caption);
  void load(name, figure, caption);
  return figure;
}

async function load(name: string, figure: HTMLElement, caption: HTMLElement): Promise<void> {
  try {
    const meta = await evidence.getEvidence({ name });
    const chunks: Uint8Array<ArrayBuffer>[] = [];
    for await (const part of evidence.readEvidence({ name })) {
      chunks.push(new Uint8Array(part.chunk));
    }
    const url = URL.createObjectURL(new Blob(chunks, { type: meta.mediaType }));
    urls.push(url);
    const label = meta.fileName || name;
    caption.textContent = `${label} · ${meta.mediaType} · ${Math.ceil(Number(meta.sizeBytes) / 1024)} KB`;
    let shown: HTMLElement;
    if (meta.mediaType.startsWith("image/")) {
      shown = element("img", "", { src: url, alt: t("evidenceAlt", { name: label }) });
    } else if (meta.mediaType.startsWith("video/")) {
      shown = element("video", "", { src: url, controls: "", preload: "metadata" });
      shown.setAttribute("aria-label", t("evidenceAlt", { name: label }));
    } else if (meta.mediaType === "application/pdf") {
      shown = element("iframe", "", { src: url, title: t("evidenceAlt", { name: label }) });
    } else {
      shown = element("a", t("download", { name: label }), { href: url, download: label });
    }
    figure.prepend(shown);
    figure.dataset.state = "shown";
  } catch (err) {
    caption.textContent = t("evidenceFailed", { name, reason: ConnectError.from(err).rawMessage });
    figure.dataset.state = "failed";
  }
}
