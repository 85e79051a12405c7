"""A `portico serve --demo` on free loopback ports with a fresh data dir, for the scripts that
check Portico with clients nobody here wrote (MQTT clients, schemathesis)."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TIMEOUT = 10


class Server:
    """`listeners` are the ones to wait for; `extra_env` adds to (or overrides) the defaults."""

    def __init__(self, binary, data_dir, extra_env=None, listeners=("http", "mqtt", "mqtt-ws")):
        env = dict(os.environ)
        env.update({
            "PORTICO_DATA_DIR": data_dir,
            "PORTICO_HTTP_ADDR": "127.0.0.1:0",
            "PORTICO_METRICS_ADDR": "127.0.0.1:0",
            "PORTICO_MQTT_ADDR": "127.0.0.1:0",
            "PORTICO_MQTT_WS_ADDR": "127.0.0.1:0",
            "PORTICO_LOG": "info",
        })
        env.update(extra_env or {})
        self.binary, self.env = binary, env
        self.proc = subprocess.Popen([binary, "serve", "--demo"], env=env, stdout=subprocess.PIPE, text=True)
        self.addrs = {}
        deadline = time.time() + 60
        while len(self.addrs) < len(listeners) and time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("portico serve exited before listening")
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("listener") in listeners:
                self.addrs[event["listener"]] = event["addr"]
        self.log = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.log.append(line)

    def token(self, sub, groups=""):
        args = [self.binary, "token", "--sub", sub] + (["--groups", groups] if groups else [])
        return subprocess.run(args, env=self.env, check=True, capture_output=True, text=True).stdout.strip()

    def api(self, method, path, token, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://{self.addrs['http']}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Checks:
    """One line per check, and the count at the end."""

    def __init__(self):
        self.passed, self.failed = 0, 0

    def __call__(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name} {detail}")

    def exit_status(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 else 1


def run_checks(body, make_server=None):
    """Runs `body(server, check)` against a fresh server started from the binary named on the
    command line (by `make_server(binary, data_dir)` when given); answers the exit status
    (non-zero when any check failed)."""
    check = Checks()
    with tempfile.TemporaryDirectory() as data_dir:
        server = (make_server or Server)(sys.argv[1], data_dir)
        try:
            body(server, check)
        finally:
            server.stop()
    return check.exit_status()
