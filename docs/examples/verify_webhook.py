#!/usr/bin/env python3
"""Verify a Kumo webhook delivery's X-Kumo-Signature (Python 3 standard library only).

    X-Kumo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

Check one delivery (the raw body on stdin); exit status 0 when valid:

    python3 verify_webhook.py "$SECRET" "t=1733400000,v1=5f0c…" < body.json

Or run a receiver that checks every POST it gets (answers 204, or 401):

    KUMO_WEBHOOK_SECRET=whsec_… python3 verify_webhook.py --serve 8000
"""

import hashlib
import hmac
import os
import sys
import time

TOLERANCE_SECS = 300  # reject timestamps further than this from our clock (replays)


def verify(secret: str, header: str, body: bytes, now=None, tolerance=TOLERANCE_SECS):
    """Returns None when `header` signs `body` with `secret`, else the reason."""
    timestamp, tags = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            tags.append(value)  # several during a secret rotation
    if timestamp is None or not timestamp.lstrip("-").isdigit() or not tags:
        return "malformed header"
    now = int(time.time()) if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        return "timestamp too far from now"
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if any(hmac.compare_digest(expected, tag) for tag in tags):
        return None
    return "signature does not match"


def serve(port: int, secret: str):
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            why = verify(secret, self.headers.get("X-Kumo-Signature", ""), body)
            self.send_response(401 if why else 204)
            self.end_headers()
            print(why or f"valid: {body.decode(errors='replace')}", flush=True)

    HTTPServer(("", port), Receiver).serve_forever()


def main(argv):
    if len(argv) == 3 and argv[1] == "--serve":
        serve(int(argv[2]), os.environ["KUMO_WEBHOOK_SECRET"])
        return 0
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    why = verify(argv[1], argv[2], sys.stdin.buffer.read())
    print(why or "valid")
    return 1 if why else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
