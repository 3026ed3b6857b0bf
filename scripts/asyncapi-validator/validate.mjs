// Validates an AsyncAPI document with the AsyncAPI initiative's own parser
// (@asyncapi/parser: the specification's JSON Schema, then its rules).
// Usage: node validate.mjs <node_modules dir> <document>
// Prints each finding as `<severity> <path>: <message>` and exits 1 on any error.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const [modules, file] = process.argv.slice(2);
if (!modules || !file) {
  console.error("usage: node validate.mjs <node_modules dir> <document>");
  process.exit(2);
}
const require = createRequire(join(modules, "package.json"));
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"), { source: file });
const names = Object.fromEntries(Object.entries(DiagnosticSeverity).map(([k, v]) => [v, k]));
for (const d of diagnostics) {
  console.log(`${names[d.severity] ?? d.severity} ${d.path.join("/")}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (document === undefined || errors.length > 0) {
  console.log(`invalid: ${errors.length} error(s)`);
  process.exit(1);
}
console.log(`valid AsyncAPI ${document.version()}`);
