#!/usr/bin/env python3
"""MQTT interoperability with clients Portico did not write.

Starts `portico serve` on free loopback ports with a fresh data dir, then drives the instrument
alert path with Debian's mosquitto_pub / mosquitto_sub (MQTT 3.1, 3.1.1 and 5 over TCP) and with
paho-mqtt over WebSocket (MQTT 3.1, 3.1.1 and 5): the lab manager gets the alert, a scientist's
wildcard subscription is refused, a wrong device secret is refused, and so are a will on a topic
the client may not publish to and a client id that is an instrument's serial.

Usage: scripts/mqtt_interop.py PATH_TO_PORTICO_BINARY
Prints one line per check and ends with "N passed, M failed"; exits non-zero on any failure.
"""

import json
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

from portico_server import TIMEOUT, run_checks


def host_port(addr):
    host, port = addr.rsplit(":", 1)
    return host, port


def mosquitto_sub(addr, version, client_id, password, topic):
    host, port = host_port(addr)
    return subprocess.Popen(
        ["mosquitto_sub", "-h", host, "-p", port, "-V", version, "-i", client_id, "-u", "user",
         "-P", password, "-t", topic, "-q", "1", "-C", "1", "-W", str(TIMEOUT)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def mosquitto_pub(addr, version, serial, secret, topic, message, client_id=None, extra=()):
    host, port = host_port(addr)
    return subprocess.run(
        ["mosquitto_pub", "-h", host, "-p", port, "-V", version, "-i", client_id or serial,
         "-u", serial, "-P", secret, "-t", topic, "-q", "1", "-m", message, *extra],
        capture_output=True, text=True, timeout=TIMEOUT)


def paho_receive(addr, protocol, client_id, password, topic, trigger):
    """Connects over WebSocket, subscribes, runs `trigger`, returns the first message (or None)."""
    host, port = host_port(addr)
    received, subscribed = [], threading.Event()
    got = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         transport="websockets", protocol=protocol)
    client.ws_set_options(path="/mqtt")
    client.username_pw_set("user", password)
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = lambda c, u, msg: (received.append(msg.payload), got.set())
    client.connect(host, int(port), keepalive=30)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        if not subscribed.wait(TIMEOUT):
            return None
        trigger()
        got.wait(TIMEOUT)
        return received[0] if received else None
    finally:
        client.loop_stop()
        client.disconnect()


def checks(server, check):
    alice = server.token("alice@acme.example")
    bob = server.token("bob@acme.example")
    carol = server.token("carol@acme.example")
    account = server.api("GET", "/v1/me", alice)["account_id"]
    bob_id = server.api("GET", "/v1/me", bob)["id"]
    instrument = server.api("POST", "/v1/instruments", alice, {
        "serial": "SN-IOP", "model": "Interop", "account_id": account, "name": "Interop rig"})
    secret = instrument["device_secret"]
    mqtt_addr, ws_addr = server.addrs["mqtt"], server.addrs["mqtt-ws"]
    own_topic = f"users/{bob_id}/notifications"

    for version in ("mqttv31", "mqttv311", "mqttv5"):
        sub = mosquitto_sub(mqtt_addr, version, f"bob-{version}", bob, own_topic)
        time.sleep(0.5)
        event = json.dumps({"severity": "error", "message": f"via {version}", "event_id": f"e-{version}"})
        pub = mosquitto_pub(mqtt_addr, version, "SN-IOP", secret, "instruments/SN-IOP/events", event)
        check(f"mosquitto_pub -V {version} as the instrument", pub.returncode == 0, pub.stderr)
        out, _ = sub.communicate(timeout=TIMEOUT + 5)
        check(f"mosquitto_sub -V {version}: lab manager gets the alert", f"via {version}" in out, out)

        denied = mosquitto_sub(mqtt_addr, version, f"carol-{version}", carol, "users/+/notifications")
        out, _ = denied.communicate(timeout=TIMEOUT + 5)
        check(f"mosquitto_sub -V {version}: wildcard over other users is refused",
              "denied" in out.lower() or denied.returncode != 0, out)

        bad = mosquitto_pub(mqtt_addr, version, "SN-IOP", "wrong-secret", "instruments/SN-IOP/events", "{}")
        check(f"mosquitto_pub -V {version}: a wrong device secret is refused", bad.returncode != 0, bad.stderr)

        # A scientist may publish to her account's channels, but not leave a retained
        # command for an instrument as her will, nor connect as the instrument's client id.
        channel = f"accounts/{account}/channels/iop"
        forged = mosquitto_pub(mqtt_addr, version, "carol", carol, channel, "hello",
                               client_id=f"carol-will-{version}",
                               extra=("--will-topic", "instruments/SN-IOP/commands",
                                      "--will-payload", "purge", "--will-retain", "--will-qos", "1"))
        check(f"mosquitto_pub -V {version}: a will on another's topic is refused",
              forged.returncode != 0 and "not authori" in (forged.stderr + forged.stdout).lower(),
              forged.stderr)
        squat = mosquitto_pub(mqtt_addr, version, "carol", carol, channel, "hello", client_id="SN-IOP")
        check(f"mosquitto_pub -V {version}: an instrument's serial as client id is refused",
              squat.returncode != 0, squat.stderr)

    for name, protocol in (("3.1", mqtt.MQTTv31), ("3.1.1", mqtt.MQTTv311), ("5", mqtt.MQTTv5)):
        def trigger(name=name):
            message = json.dumps({"severity": "critical", "message": f"paho {name}", "event_id": f"p-{name}"})
            mosquitto_pub(mqtt_addr, "mqttv311", "SN-IOP", secret, "instruments/SN-IOP/events", message)
        payload = paho_receive(ws_addr, protocol, f"bob-ws-{name}", bob, own_topic, trigger)
        check(f"paho-mqtt MQTT {name} over WebSocket gets the alert",
              payload is not None and f"paho {name}".encode() in payload, repr(payload))


if __name__ == "__main__":
    sys.exit(run_checks(checks))
