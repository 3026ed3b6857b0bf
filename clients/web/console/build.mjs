// Bundles the console into dist/: main.js (with its source map), index.html,
// style.css, macros.json and config.json (no identity provider: the
// development sign-in), then prints the bundle's size, raw and gzipped.
import { cpSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const out = new URL("./dist/", import.meta.url);
rmSync(out, { recursive: true, force: true });
mkdirSync(out);
await build({
  entryPoints: [new URL("./src/main.ts", import.meta.url).pathname],
  outfile: new URL("main.js", out).pathname,
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: "linked",
  legalComments: "linked",
  logLevel: "warning",
});
for (const file of ["index.html", "style.css", "macros.json", "config.json"]) {
  cpSync(new URL(`./${file}`, import.meta.url), new URL(file, out));
}
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
// What an agent downloads before the console works, gzipped: kept under 300 KB.
const BUDGET = 300 * 1024;
let total = 0;
for (const file of ["main.js", "style.css"]) {
  const bytes = readFileSync(new URL(file, out));
  const gzipped = gzipSync(bytes).length;
  total += gzipped;
  console.log(`console/dist/${file}: ${kib(bytes.length)}, ${kib(gzipped)} gzipped`);
}
if (total > BUDGET) {
  console.error(`the console is ${kib(total)} gzipped, over its ${kib(BUDGET)} budget`);
  process.exit(1);
}
