/**
 * What both pages (the self-service page and the agents' console) build their
 * screens with: elements with text (never HTML) and attributes, and the
 * language a person first sees.
 */

/** An element with `content` as text and the given attributes. */
export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  content = "",
  attrs: Record<string, string> = {},
): HTMLElementTagNameMap[K] {
  const made = document.createElement(tag);
  made.textContent = content;
  for (const [name, value] of Object.entries(attrs)) {
    made.setAttribute(name, value);
  }
  return made;
}

/** The person's choice, else the browser's language: Chinese for any `zh`, English otherwise. */
export function initialLocale(saved: string | null, browser: readonly string[]): "zh-CN" | "en" {
  if (saved === "zh-CN" || saved === "en") {
    return saved;
  }
  for (const tag of browser) {
    const lang = tag.toLowerCase();
    if (lang.startsWith("zh")) return "zh-CN";
    if (lang.startsWith("en")) return "en";
  }
  return "en";
}
