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
export function initialLocale(saved: string | null, browser: readonly string[]): Locale {
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

export type Locale = "zh-CN" | "en";

/**
 * A page's strings in both languages: `text` fills `{name}` placeholders (a
 * missing value stays visible as `{name}`), `textOr` reads a key the table may
 * not have (a state or type from the server), `isKey` tells which it has.
 */
export function translations<K extends string>(table: Record<Locale, Record<K, string>>) {
  const has = (key: string): key is K => key in table["zh-CN"];
  return {
    text(locale: Locale, key: K, values: Record<string, string | number> = {}): string {
      return table[locale][key].replace(/\{(\w+)\}/g, (_, name: string) =>
        String(values[name] ?? `{${name}}`),
      );
    },
    textOr(locale: Locale, key: string, fallback: string): string {
      return has(key) ? table[locale][key] : fallback;
    },
    isKey: has,
  };
}
