/** The DSA statement-of-reasons vocabulary as choices: the generated enums with their labels. */

import { textOr } from "./i18n";
import { locale } from "./ui";

/** An enum's defined values (not UNSPECIFIED) as [value, label] choices. */
export function choices(e: Record<string, string | number>, group: string): [string, string][] {
  return Object.entries(e)
    .filter((entry): entry is [string, number] => typeof entry[1] === "number" && entry[1] !== 0)
    .map(([name, value]) => [String(value), label(group, name)]);
}

/** `vis`, `CONTENT_REMOVED` → the table's label, else "content removed" (`AppealFiled`: "appeal filed"). */
export function label(group: string, name: string): string {
  const plain = name
    .replace(/([a-z])([A-Z])/g, "$1 $2")
    .replace(/_/g, " ")
    .toLowerCase();
  return textOr(locale, `${group}.${name}`, plain);
}

export function nameOf(e: Record<string | number, string | number>, value: number): string {
  const name = e[value];
  return typeof name === "string" ? name : "UNSPECIFIED";
}

/** The end of a chosen day (a date input's value) as a Timestamp init, or undefined. */
export function endOfDay(value: string): { seconds: bigint; nanos: number } | undefined {
  if (!value) return undefined;
  const end = new Date(`${value}T23:59:59`);
  return Number.isNaN(end.getTime())
    ? undefined
    : { seconds: BigInt(Math.floor(end.getTime() / 1000)), nanos: 0 };
}

/** "CN, HK" → ["CN", "HK"]. */
export function list(value: string): string[] {
  return value
    .split(/[,，\s]+/)
    .map((v) => v.trim())
    .filter(Boolean);
}
