// Builds the widget into build/web/widget/ (one script, one stylesheet, nothing from a CDN).
// Run by `make widget` after `npm ci`; output: clinic-chat.js, clinic-chat.css.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "build", "web", "widget");
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(here, "widget", "widget.js")],
  outfile: join(out, "clinic-chat.js"),
  bundle: true,
  format: "iife",
  target: ["es2020"],
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  logLevel: "warning",
});
copyFileSync(join(here, "widget", "widget.css"), join(out, "clinic-chat.css"));
console.log(`widget built into ${out}`);
