// Copies the pinned libraries' distributed files (package.json's `osmVendor`: vendored name ->
// "<package>/<path in the package>") from node_modules into ../static/vendor and writes
// MANIFEST.json there: for each vendored file its package, the installed version and its
// sha256. Run after `npm ci` (make dashboard-vendor); the page and the pods use only the
// vendored copies. Files in static/vendor that osmVendor no longer names are removed.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "static", "vendor");
const manifest = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));

mkdirSync(target, { recursive: true });
const files = {};
for (const [name, source] of Object.entries(manifest.osmVendor)) {
  const packageName = source.startsWith("@") ? source.split("/").slice(0, 2).join("/") : source.split("/")[0];
  const inPackage = source.slice(packageName.length + 1);
  const installed = JSON.parse(readFileSync(join(here, "node_modules", packageName, "package.json"), "utf8"));
  if (installed.version !== manifest.dependencies[packageName]) {
    throw new Error(`${packageName}: installed ${installed.version}, package.json pins ${manifest.dependencies[packageName]}; run npm ci`);
  }
  const from = join(here, "node_modules", packageName, inPackage);
  copyFileSync(from, join(target, name));
  const sha256 = createHash("sha256").update(readFileSync(from)).digest("hex");
  files[name] = { package: packageName, version: installed.version, source: inPackage, sha256 };
}
for (const name of readdirSync(target)) {
  if (name !== "MANIFEST.json" && !(name in files)) rmSync(join(target, name));
}
writeFileSync(join(target, "MANIFEST.json"), JSON.stringify({ files }, null, 2) + "\n");
console.log(`dashboard-vendor: ${Object.keys(files).length} files in ${target}`);
