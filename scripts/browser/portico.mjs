// What the browser checks share: a `portico serve` child on free ports, and the check lines.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

// Starts `binary args` and resolves once every listener in `wanted` has printed its address:
// `{ child, addrs }`, addrs keyed by listener name ("http", "mqtt-wss", ...).
export function startPortico(binary, args, env, wanted) {
  const child = spawn(binary, args, { env, stdio: ["ignore", "pipe", "inherit"] });
  const addrs = {};
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("portico serve did not listen in 60 s")), 60000);
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      let event;
      try { event = JSON.parse(line); } catch { return; }
      if (wanted.includes(event.listener)) addrs[event.listener] = event.addr;
      if (wanted.every((w) => addrs[w])) {
        clearTimeout(timer);
        resolve({ child, addrs });
      }
    });
    child.on("exit", (code) => reject(new Error(`portico serve exited (${code})`)));
  });
}

// One line per check; `summary()` prints the count and answers the exit status.
export function checks() {
  let passed = 0;
  let failed = 0;
  const check = (name, ok, detail) => {
    if (ok) passed += 1; else failed += 1;
    console.log(`${ok ? "PASS" : "FAIL"} ${name}${ok ? "" : `: ${JSON.stringify(detail)}`}`);
  };
  const summary = () => {
    console.log(`${passed} passed, ${failed} failed`);
    return failed === 0 ? 0 : 1;
  };
  return { check, summary };
}
