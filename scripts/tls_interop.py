#!/usr/bin/env python3
"""TLS on every listener, with clients Portico did not write.

Makes a test CA and a server certificate with the openssl command, starts `portico serve --demo`
with TLS only (plaintext off) on free loopback ports, and checks:
- curl over HTTPS (`/healthz`, `/readyz`), and an upload link that says https;
- the plaintext HTTP, MQTT and WebSocket ports are closed;
- mosquitto_pub / mosquitto_sub with `--cafile` (MQTT 3.1, 3.1.1, 5): the alert path end to end;
  a client that does not trust the CA, and a plaintext client on the TLS port, get nothing;
- paho-mqtt over TLS and over secure WebSocket;
- certificate reload: new files are presented on all three listeners without a restart, and a
  connection made before the reload goes on receiving.

Usage: scripts/tls_interop.py PATH_TO_PORTICO_BINARY
Prints one line per check and ends with "N passed, M failed"; exits non-zero on any failure.
"""

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt

from portico_server import TIMEOUT, Server, run_checks

RELOAD_SECS = 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TEST_CA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_ca.sh")


def make_ca(directory, name):
    """A new CA in its own folder under `directory`; answers (key, pem) paths."""
    folder = tempfile.mkdtemp(prefix="ca-", dir=directory)
    subprocess.run(["bash", TEST_CA, "ca", folder, name], check=True, capture_output=True)
    return os.path.join(folder, "ca.key"), os.path.join(folder, "ca.pem")


def make_server_cert(directory, ca, name):
    """A certificate for localhost and 127.0.0.1 signed by `ca`; answers (cert, key) paths."""
    folder = os.path.dirname(ca[1])
    subprocess.run(["bash", TEST_CA, "issue", folder, name], check=True, capture_output=True)
    return os.path.join(folder, f"{name}.pem"), os.path.join(folder, f"{name}.key")


def presented(addr, ca_pem):
    """The DER certificate the TLS listener at `addr` presents, verified against `ca_pem`."""
    host, port = addr.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca_pem)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True


def https(server, method, path, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    port = server.addrs["https"].rsplit(":", 1)[1]
    request = urllib.request.Request(f"https://localhost:{port}{path}", data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=TIMEOUT, context=server.tls_context) as response:
        return json.loads(response.read())


def mosquitto_sub(port, ca, version, client_id, password, topic):
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "localhost", "-p", str(port), "--cafile", ca, "-V", version,
         "-i", client_id, "-u", "user", "-P", password, "-t", topic, "-q", "1", "-C", "1",
         "-W", str(TIMEOUT)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def mosquitto_pub(port, ca, version, serial, secret, message, tls=True):
    options = ["--cafile", ca] if tls else []
    return subprocess.run(
        ["mosquitto_pub", "-h", "localhost", "-p", str(port), *options, "-V", version,
         "-i", serial, "-u", serial, "-P", secret, "-t", f"instruments/{serial}/events",
         "-q", "1", "-m", message],
        capture_output=True, text=True, timeout=TIMEOUT + 5)


class Paho:
    """A paho client over TLS (`transport` "tcp" or "websockets") subscribed to `topic`."""

    def __init__(self, port, ca, transport, client_id, password, topic):
        self.received, self.got = [], threading.Event()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  transport=transport, protocol=mqtt.MQTTv311)
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        self.client.tls_set(ca_certs=ca)
        self.client.username_pw_set("user", password)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = lambda c, u, msg: (self.received.append(msg.payload), self.got.set())
        self.client.connect("localhost", port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        self.ready = subscribed.wait(TIMEOUT)

    def next_message(self, trigger):
        self.got.clear()
        before = len(self.received)
        trigger()
        self.got.wait(TIMEOUT)
        return self.received[before] if len(self.received) > before else None

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def checks(server, check):
    ca_pem = server.ca[1]
    https_port = port_of(server.addrs["https"])
    mqtts_port, wss_port = port_of(server.addrs["mqtts"]), port_of(server.addrs["mqtt-wss"])

    curl = subprocess.run(["curl", "-sS", "--fail", "--cacert", ca_pem,
                           f"https://localhost:{https_port}/readyz"], capture_output=True, text=True)
    check("curl --cacert https://.../readyz answers 200", curl.returncode == 0, curl.stderr)
    untrusted = subprocess.run(["curl", "-sS", "--fail", f"https://localhost:{https_port}/healthz"],
                               capture_output=True, text=True)
    check("curl without the CA refuses the certificate", untrusted.returncode != 0, untrusted.stdout)
    for name, port in server.plaintext_ports.items():
        check(f"plaintext {name} port is closed (tls.plaintext = false)", refused(port))

    alice = server.token("alice@acme.example")
    bob = server.token("bob@acme.example")
    me = https(server, "GET", "/v1/me", alice)
    bob_id = https(server, "GET", "/v1/me", bob)["id"]
    instrument = https(server, "POST", "/v1/instruments", alice, {
        "serial": "SN-TLS", "model": "TLS", "account_id": me["account_id"], "name": "TLS rig"})
    secret = instrument["device_secret"]
    own_topic = f"users/{bob_id}/notifications"

    carol = server.token("carol@acme.example")
    ticket = https(server, "POST", "/v1/documents/uploads", carol,
                   {"filename": "run.csv", "content_type": "text/csv", "size": 10})
    check("an upload link made over HTTPS says https",
          ticket["upload_url"].startswith(f"https://localhost:{https_port}/"), ticket["upload_url"])

    for version in ("mqttv31", "mqttv311", "mqttv5"):
        sub = mosquitto_sub(mqtts_port, ca_pem, version, f"bob-{version}", bob, own_topic)
        time.sleep(0.5)
        event = json.dumps({"severity": "error", "message": f"tls {version}", "event_id": f"t-{version}"})
        pub = mosquitto_pub(mqtts_port, ca_pem, version, "SN-TLS", secret, event)
        check(f"mosquitto_pub --cafile -V {version} as the instrument", pub.returncode == 0, pub.stderr)
        out, _ = sub.communicate(timeout=TIMEOUT + 5)
        check(f"mosquitto_sub --cafile -V {version}: lab manager gets the alert", f"tls {version}" in out, out)

    other_ca = make_ca(server.tls_dir, "Other CA")
    wrong = mosquitto_pub(mqtts_port, other_ca[1], "mqttv311", "SN-TLS", secret, "{}")
    check("mosquitto_pub trusting another CA does not connect", wrong.returncode != 0, wrong.stderr)
    plain = mosquitto_pub(mqtts_port, ca_pem, "mqttv311", "SN-TLS", secret, "{}", tls=False)
    check("a plaintext MQTT client on the TLS port does not connect", plain.returncode != 0, plain.stderr)

    def alert(text):
        def trigger():
            message = json.dumps({"severity": "critical", "message": text, "event_id": text})
            mosquitto_pub(mqtts_port, ca_pem, "mqttv311", "SN-TLS", secret, message)
        return trigger

    clients = {}
    for transport, port in (("tcp", mqtts_port), ("websockets", wss_port)):
        client = Paho(port, ca_pem, transport, f"bob-paho-{transport}", bob, own_topic)
        clients[transport] = client
        payload = client.next_message(alert(f"paho {transport}")) if client.ready else None
        check(f"paho-mqtt over TLS ({transport}) gets the alert",
              payload is not None and f"paho {transport}".encode() in payload, repr(payload))

    # Reload: a new certificate and key from the same CA, written over the old files.
    new_cert, new_key = make_server_cert(server.tls_dir, server.ca, "renewed")
    for source, target in ((new_key, server.key_path), (new_cert, server.cert_path)):
        with open(source, "rb") as f, open(target + ".tmp", "wb") as out:
            out.write(f.read())
        os.replace(target + ".tmp", target)
    expected = der_of(new_cert)
    for name in ("https", "mqtts", "mqtt-wss"):
        deadline, seen = time.time() + 10 * RELOAD_SECS + 5, None
        while time.time() < deadline:
            try:
                seen = presented(server.addrs[name], ca_pem)
            except ConnectionResetError:
                # The broker's old TLS listeners close once the new ones run; a connection the
                # kernel queued on an old one in that instant is reset, and a client reconnects.
                continue
            if seen == expected:
                break
            time.sleep(0.2)
        check(f"{name} presents the renewed certificate without a restart", seen == expected)
    for transport, client in clients.items():
        payload = client.next_message(alert(f"after reload {transport}"))
        check(f"a paho connection ({transport}) made before the reload still gets alerts",
              payload is not None and b"after reload" in payload, repr(payload))
        client.close()
    sub = mosquitto_sub(mqtts_port, ca_pem, "mqttv311", "bob-after", bob, own_topic)
    time.sleep(0.5)
    pub = mosquitto_pub(mqtts_port, ca_pem, "mqttv311", "SN-TLS", secret,
                        json.dumps({"severity": "error", "message": "new conn", "event_id": "n-1"}))
    out, _ = sub.communicate(timeout=TIMEOUT + 5)
    check("a new connection after the reload gets the alert", pub.returncode == 0 and "new conn" in out, out)
    reloads = [line for line in server.log if "TLS certificate reloaded" in line]
    check("the reload is logged", len(reloads) >= 1, "".join(server.log[-5:]))


def make_server(binary, data_dir):
    tls_dir = tempfile.mkdtemp(prefix="portico-tls-")
    ca = make_ca(tls_dir, "Portico Test CA")
    cert, key = make_server_cert(tls_dir, ca, "server")
    plaintext = {"HTTP": free_port(), "MQTT": free_port(), "WebSocket": free_port()}
    server = Server(binary, data_dir, {
        "PORTICO_TLS_CERT": cert,
        "PORTICO_TLS_KEY": key,
        "PORTICO_TLS_PLAINTEXT": "false",
        "PORTICO_TLS_RELOAD_SECS": str(RELOAD_SECS),
        "PORTICO_HTTP_ADDR": f"127.0.0.1:{plaintext['HTTP']}",
        "PORTICO_MQTT_ADDR": f"127.0.0.1:{plaintext['MQTT']}",
        "PORTICO_MQTT_WS_ADDR": f"127.0.0.1:{plaintext['WebSocket']}",
        "PORTICO_HTTPS_ADDR": "127.0.0.1:0",
        "PORTICO_MQTTS_ADDR": "127.0.0.1:0",
        "PORTICO_WSS_ADDR": "127.0.0.1:0",
    }, listeners=("https", "mqtts", "mqtt-wss"))
    server.tls_dir, server.ca, server.cert_path, server.key_path = tls_dir, ca, cert, key
    server.plaintext_ports = plaintext
    server.tls_context = ssl.create_default_context(cafile=ca[1])
    return server


if __name__ == "__main__":
    sys.exit(run_checks(checks, make_server))
