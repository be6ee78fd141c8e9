#!/usr/bin/env python3
"""A device for the bridge's end-to-end tests, on paho-mqtt (MQTT 3.1.1 over
mutual TLS with a device certificate).

Subscribes to its command topic, prints `READY` once subscribed, prints
`CMD <json>` for each command it receives and answers on its acks topic as
`--ack` says (ok, failed, or none). With `--readings N` it also publishes N
temperature readings at QoS 1 (val = i, ts = --ts-base + i ms), waits until
the node acknowledged each, and prints `SENT N`. Runs until killed or until
stdin closes.
"""

import argparse
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--ack", default="ok", choices=["ok", "failed", "none"])
    ap.add_argument("--readings", type=int, default=0)
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--ts-base", type=int, default=1_700_000_000_000)
    args = ap.parse_args()

    out_lock = threading.Lock()

    def say(line):
        with out_lock:
            print(line, flush=True)

    commands = f"devices/{args.id}/commands"
    acks = f"devices/{args.id}/acks"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=args.id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    client.tls_set(ca_certs=args.ca, certfile=args.cert, keyfile=args.key)
    client.max_inflight_messages_set(50)
    subscribed = threading.Event()

    def on_connect(c, _userdata, _flags, reason, _props):
        if reason.is_failure:
            say(f"CONNECT-FAILED {reason}")
            return
        c.subscribe(commands, qos=1)

    def on_subscribe(_c, _userdata, _mid, _reasons, _props):
        subscribed.set()
        say("READY")

    def on_message(c, _userdata, msg):
        body = msg.payload.decode("utf-8", "replace")
        say(f"CMD {body}")
        if args.ack == "none":
            return
        try:
            cmd = json.loads(body)
        except ValueError:
            return
        ack = {"id": cmd.get("id"), "result": args.ack, "ts": int(time.time() * 1000)}
        if args.ack == "failed":
            ack["reason"] = "the appliance did not respond"
        elif cmd.get("type") == "aircon" and isinstance(cmd.get("settings"), dict):
            # The unit ends where the full settings put it (the protocol's ack state).
            ack["state"] = {"aircon": dict(cmd["settings"], temp_unit="c")}
        c.publish(acks, json.dumps(ack), qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()

    if args.readings:
        subscribed.wait(30)
        infos = []
        topic = f"devices/{args.id}/sensors/te"
        for i in range(args.readings):
            body = json.dumps({"val": float(i), "ts": args.ts_base + i})
            infos.append(client.publish(topic, body, qos=1))
            time.sleep(args.interval_ms / 1000.0)
        for info in infos:
            info.wait_for_publish(60)
        say(f"SENT {args.readings}")

    # Until the test closes stdin or kills us.
    for _ in sys.stdin:
        pass
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
