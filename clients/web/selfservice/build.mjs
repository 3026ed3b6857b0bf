// Bundles the page into dist/: main.js (with its source map), index.html and style.css.
import { cpSync, mkdirSync, rmSync } from "node:fs";
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
for (const file of ["index.html", "style.css"]) {
  cpSync(new URL(`./${file}`, import.meta.url), new URL(file, out));
}
