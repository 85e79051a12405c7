#!/usr/bin/env node
// MQTT.js in a real browser over secure WebSocket: makes a test CA and a server certificate with
// openssl, starts `portico serve --demo` with TLS only (free loopback ports, fresh data dir), and
// has headless Chromium, trusting that certificate, connect MQTT.js to wss://localhost/mqtt with
// the lab manager's access token. An instrument's critical event (mosquitto_pub over TLS) shows
// up on the page as a notification; a subscription to another user's notifications is refused;
// a wrong token cannot connect.
//
// Usage: node scripts/browser/wss.mjs PATH_TO_PORTICO_BINARY [SCREENSHOT_DIR]
// Needs Debian's `chromium` (or CHROMIUM=path), openssl, mosquitto-clients and `npm install` here.
// Prints one line per check and ends with "N passed, M failed"; exits non-zero on any failure.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { checks, startPortico } from "./portico.mjs";

const [binary, shots = tmpdir()] = process.argv.slice(2);
if (!binary) {
  console.error("usage: wss.mjs PATH_TO_PORTICO_BINARY [SCREENSHOT_DIR]");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const MQTT_JS = readFileSync(join(here, "node_modules/mqtt/dist/mqtt.min.js"), "utf8");

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Instrument alerts</title>
<style>
  body { font: 15px system-ui, sans-serif; margin: 2em; color: #111; }
  li { margin: 4px 0; } .state { font-weight: bold; }
</style>
<script src="/mqtt.min.js"></script></head>
<body><h1>Instrument alerts</h1>
<p>Connection: <span class="state" id="state">not connected</span></p>
<ul id="alerts"></ul>
<script>
  window.received = [];
  window.connectBroker = (url, token, topic) => new Promise((resolve) => {
    const client = mqtt.connect(url, { username: "user", password: token, protocolVersion: 4,
      clientId: "browser-" + Math.random().toString(16).slice(2), reconnectPeriod: 0,
      connectTimeout: 10000 });
    window.client = client;
    client.on("message", (t, payload) => {
      const n = JSON.parse(payload.toString());
      window.received.push(n);
      const li = document.createElement("li");
      li.textContent = n.title + ": " + n.body;
      document.getElementById("alerts").appendChild(li);
    });
    client.on("connect", () => {
      document.getElementById("state").textContent = "connected over " + url;
      client.subscribe(topic, { qos: 1 }, (err, granted) => resolve({ connected: true,
        granted: granted ? granted.map((g) => g.qos) : null, error: err ? String(err) : null }));
    });
    client.on("error", (e) => resolve({ connected: false, error: String(e) }));
    client.on("close", () => resolve({ connected: false, error: "closed" }));
  });
  window.subscribe = (topic) => new Promise((resolve) => window.client.subscribe(topic, { qos: 1 },
    (err, granted) => resolve({ granted: granted ? granted.map((g) => g.qos) : null,
      error: err ? String(err) : null })));
</script></body></html>`;

function pageServer() {
  return new Promise((resolve) => {
    const server = createServer((req, res) => {
      if (req.url === "/mqtt.min.js") {
        res.writeHead(200, { "content-type": "text/javascript" });
        res.end(MQTT_JS);
        return;
      }
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(PAGE);
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

function makeCertificates(dir) {
  const script = join(here, "..", "test_ca.sh");
  execFileSync("bash", [script, "ca", dir, "Portico Browser Test CA"]);
  execFileSync("bash", [script, "issue", dir, "localhost"]);
  const [pem, key] = [join(dir, "localhost.pem"), join(dir, "localhost.key")];
  // Chromium trusts the server's key by its SPKI hash (it has no way to take a CA file).
  const spki = execFileSync("sh", ["-c",
    `openssl x509 -in '${pem}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`]);
  return { caPem: join(dir, "ca.pem"), cert: pem, key, spki: spki.toString().trim() };
}

const { check, summary } = checks();

const tlsDir = mkdtempSync(join(tmpdir(), "portico-wss-tls-"));
const certs = makeCertificates(tlsDir);
const dataDir = mkdtempSync(join(tmpdir(), "portico-wss-"));
const env = {
  ...process.env,
  PORTICO_DATA_DIR: dataDir,
  PORTICO_TLS_CERT: certs.cert,
  PORTICO_TLS_KEY: certs.key,
  PORTICO_TLS_PLAINTEXT: "false",
  PORTICO_HTTPS_ADDR: "127.0.0.1:0",
  PORTICO_MQTTS_ADDR: "127.0.0.1:0",
  PORTICO_WSS_ADDR: "127.0.0.1:0",
  PORTICO_METRICS_ADDR: "127.0.0.1:0",
  PORTICO_LOG: "info",
};
const pages = await pageServer();
const portico = await startPortico(binary, ["serve", "--demo"], env, ["https", "mqtts", "mqtt-wss"]);
const token = (sub) => execFileSync(binary, ["token", "--sub", sub], { env }).toString().trim();
const bob = token("bob@acme.example");
const httpsPort = portico.addrs.https.split(":").pop();
const wssPort = portico.addrs["mqtt-wss"].split(":").pop();
const mqttsPort = portico.addrs.mqtts.split(":").pop();
const me = JSON.parse(execFileSync("curl", ["-sS", "--fail", "--cacert", certs.caPem,
  "-H", `Authorization: Bearer ${bob}`, `https://localhost:${httpsPort}/v1/me`]).toString());
const guide = readFileSync(join(dataDir, "demo.txt"), "utf8");
const secret = guide.match(/-u SN-ACME-001 -P (\S+)/)[1];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", `--ignore-certificate-errors-spki-list=${certs.spki}`],
});
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${pages.address().port}/`);
  const url = `wss://localhost:${wssPort}/mqtt`;
  const own = `users/${me.id}/notifications`;
  const connected = await page.evaluate(([u, t, topic]) => window.connectBroker(u, t, topic), [url, bob, own]);
  check("MQTT.js connects over wss:// with the user's token", connected.connected, connected);
  check("its own notifications topic is granted", connected.granted?.[0] === 1, connected);
  const others = await page.evaluate(() => window.subscribe("users/+/notifications"));
  // MQTT.js reports a SUBACK failure (0x80) as an error on the subscribe call.
  check("a wildcard over other users' notifications is refused", /Subscribe error/.test(others.error || ""), others);

  execFileSync("mosquitto_pub", ["-h", "localhost", "-p", mqttsPort, "--cafile", certs.caPem,
    "-i", "SN-ACME-001", "-u", "SN-ACME-001", "-P", secret, "-t", "instruments/SN-ACME-001/events",
    "-q", "1", "-m", JSON.stringify({ severity: "critical", message: "Pump pressure too high", event_id: "browser-1" })]);
  const got = await page.waitForFunction(() => window.received.length > 0, null, { timeout: 10000 })
    .then(() => page.evaluate(() => window.received[0])).catch((e) => ({ error: String(e) }));
  check("the instrument's critical event arrives on the page as a notification",
    got.kind === "instrument_alert" && got.body === "Pump pressure too high", got);
  await page.screenshot({ path: join(shots, "portico-wss-alerts.png") });

  const stranger = await browser.newPage();
  await stranger.goto(`http://127.0.0.1:${pages.address().port}/`);
  const refused = await stranger.evaluate(([u, topic]) => window.connectBroker(u, "not.a.token", topic), [url, own]);
  check("a wrong token does not connect over wss://", !refused.connected, refused);
} finally {
  await browser.close();
  portico.child.kill("SIGTERM");
  pages.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(tlsDir, { recursive: true, force: true });
}
process.exit(summary());
