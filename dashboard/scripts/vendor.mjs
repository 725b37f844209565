// Copy the third-party browser assets the dashboard and /docs, /redoc serve from node_modules
// (installed from package-lock.json by `npm ci`) into static/vendor/, with their licences, and
// write static/vendor/manifest.json: each package's locked version and each file's sha256.
// The copies are committed so that neither `make install` nor CI needs Node; the test
// tests/dashboard/test_serving.py checks the manifest against package-lock.json.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "static", "vendor");

export const ASSETS = {
  uplot: ["dist/uPlot.esm.js", "dist/uPlot.min.css", "LICENSE"],
  "swagger-ui-dist": [
    "swagger-ui-bundle.js",
    "swagger-ui-bundle.js.LICENSE.txt",
    "swagger-ui.css",
    "favicon-32x32.png",
    "LICENSE",
    "NOTICE",
  ],
  redoc: ["bundles/redoc.standalone.js", "bundles/redoc.standalone.js.LICENSE.txt", "LICENSE"],
};

function sha256(path) {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function vendor() {
  rmSync(out, { recursive: true, force: true });
  const manifest = {};
  for (const [name, files] of Object.entries(ASSETS)) {
    const source = join(root, "node_modules", name);
    const { version } = JSON.parse(readFileSync(join(source, "package.json"), "utf8"));
    manifest[name] = { version, files: {} };
    for (const file of files) {
      const target = join(out, name, file.split("/").pop());
      mkdirSync(dirname(target), { recursive: true });
      copyFileSync(join(source, file), target);
      manifest[name].files[file.split("/").pop()] = sha256(target);
    }
  }
  writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
}

vendor();
