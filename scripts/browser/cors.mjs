#!/usr/bin/env node
// Cross-origin calls from a real browser page: starts `portico serve` (free loopback ports, fresh
// data dir) allowing one origin, serves a small portal page from that origin and from another
// one, and has headless Chromium call the API from both with a bearer token. The allowed page
// reads answers (errors too) and `x-request-id`; the other page is refused by the browser.
//
// Usage: node scripts/browser/cors.mjs PATH_TO_PORTICO_BINARY [SCREENSHOT_DIR]
// Needs Debian's `chromium` (or CHROMIUM=path) and `npm install` in this folder.
// Prints one line per check and ends with "N passed, M failed"; exits non-zero on any failure.

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { checks, startPortico } from "./portico.mjs";

const [binary, shots = tmpdir()] = process.argv.slice(2);
if (!binary) {
  console.error("usage: cors.mjs PATH_TO_PORTICO_BINARY [SCREENSHOT_DIR]");
  process.exit(2);
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Portal</title>
<style>
  body { font: 15px system-ui, sans-serif; margin: 2em; }
  table { border-collapse: collapse; } td, th { border: 1px solid #999; padding: 4px 10px; }
  .ok { background: #dfd; } .refused { background: #fdd; }
</style></head>
<body><h1>Portal at <span id="origin"></span></h1>
<table><thead><tr><th>call</th><th>outcome</th></tr></thead><tbody id="rows"></tbody></table>
<script>
  document.getElementById("origin").textContent = location.origin;
  // One call to the API; what a portal script can see of the answer.
  window.call = async (url, init, label) => {
    let outcome;
    try {
      const r = await fetch(url, init);
      const body = await r.json().catch(() => null);
      outcome = { ok: true, status: r.status, requestId: r.headers.get("x-request-id"),
                  location: r.headers.get("location"), body };
    } catch (e) {
      outcome = { ok: false, error: String(e) };
    }
    const row = document.createElement("tr");
    row.className = outcome.ok ? "ok" : "refused";
    row.innerHTML = "<td></td><td></td>";
    row.cells[0].textContent = label;
    row.cells[1].textContent = outcome.ok
      ? outcome.status + " (x-request-id " + (outcome.requestId || "unreadable") + ")"
      : "refused by the browser: " + outcome.error;
    document.getElementById("rows").appendChild(row);
    return outcome;
  };
</script></body></html>`;

function pageServer() {
  return new Promise((resolve) => {
    const server = createServer((_, res) => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(PAGE);
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

const { check, summary } = checks();

const allowed = await pageServer();
const other = await pageServer();
const allowedOrigin = `http://127.0.0.1:${allowed.address().port}`;
const otherOrigin = `http://127.0.0.1:${other.address().port}`;
const dataDir = mkdtempSync(join(tmpdir(), "portico-cors-"));
const env = {
  ...process.env,
  PORTICO_DATA_DIR: dataDir,
  PORTICO_HTTP_ADDR: "127.0.0.1:0",
  PORTICO_METRICS_ADDR: "127.0.0.1:0",
  PORTICO_MQTT_ADDR: "127.0.0.1:0",
  PORTICO_MQTT_WS_ADDR: "127.0.0.1:0",
  PORTICO_HTTP_CORS_ORIGINS: allowedOrigin,
  PORTICO_LOG: "info",
};
const portico = await startPortico(binary, ["serve"], env, ["http"]);
const api = `http://${portico.addrs.http}`;
const token = execFileSync(binary, ["token", "--sub", "admin@portico.example", "--groups", "portico-admins"], { env })
  .toString().trim();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage();
  await page.goto(`${allowedOrigin}/`);
  const auth = { Authorization: `Bearer ${token}` };
  const me = await page.evaluate(([u, h]) => window.call(u, { headers: h }, "GET /v1/me"), [`${api}/v1/me`, auth]);
  check("allowed origin reads GET /v1/me", me.ok && me.status === 200 && me.body?.sub === "admin@portico.example", me);
  check("allowed origin reads x-request-id", me.ok && /^[0-9a-f-]{36}$/.test(me.requestId || ""), me);
  const created = await page.evaluate(
    ([u, h]) => window.call(u, {
      method: "POST",
      headers: { ...h, "Content-Type": "application/json" },
      body: JSON.stringify({ name: "Browser Labs", kind: "customer" }),
    }, "POST /v1/accounts (preflighted)"),
    [`${api}/v1/accounts`, auth],
  );
  check("allowed origin POSTs JSON after a preflight", created.ok && created.status === 201, created);
  check("allowed origin reads Location", created.ok && (created.location || "").startsWith("/v1/accounts/"), created);
  const refused = await page.evaluate(
    ([u]) => window.call(u, { headers: { Authorization: "Bearer not.a.token" } }, "GET /v1/me, bad token"),
    [`${api}/v1/me`],
  );
  check("allowed origin reads a 401 problem", refused.ok && refused.status === 401 && refused.body?.status === 401, refused);
  await page.screenshot({ path: join(shots, "portico-cors-allowed.png") });

  const stranger = await browser.newPage();
  await stranger.goto(`${otherOrigin}/`);
  const blocked = await stranger.evaluate(([u, h]) => window.call(u, { headers: h }, "GET /v1/me"), [`${api}/v1/me`, auth]);
  check("another origin is refused by the browser", !blocked.ok, blocked);
  await stranger.screenshot({ path: join(shots, "portico-cors-other.png") });
} finally {
  await browser.close();
  portico.child.kill("SIGTERM");
  allowed.close();
  other.close();
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(summary());
