#!/usr/bin/env python3
"""A loopback stand-in for Snowflake's SQL API v2, for Portico's warehouse tests.

No Snowflake runs on a test machine, and fakesnow (PyPI) emulates only the Python connector's
protocol. This server speaks the SQL API's wire format and runs each statement on fakesnow, so
Portico's MERGE statements execute in Snowflake's dialect as fakesnow knows it:

- `POST /api/v2/statements?requestId=<uuid>&retry=true`: a key-pair JWT is required
  (`Authorization: Bearer`, `X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT`, a User-Agent),
  checked against the public key given on the command line: RS256, `iss` =
  `ACCOUNT.USER.SHA256:<fingerprint>`, `sub` = `ACCOUNT.USER`, at most an hour long. Bindings
  (`{"1": {"type": "TEXT", "value": ...}}`) are passed as `?` parameters. A request id seen
  before with `retry=true` answers the first run's result without running again.
- `GET /api/v2/statements/<handle>`: a statement's result (after a 202).
- `POST /standin/script` `{"answers": [503, 202, ...]}`: how the next statements are answered
  before they run (503: refused, not run; 202: run, answered "still running" once, then 200),
  so tests reach the client's retry and polling paths. `GET /standin/stats`: what happened.

Usage: snowflake_standin.py --public-key key.pub.pem --account ACCT --user USER
Prints `listening on http://127.0.0.1:<port>` when ready.
"""

import argparse
import base64
import hashlib
import json
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import fakesnow
import jwt
from cryptography.hazmat.primitives import serialization


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--account", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--database", default="PORTICO")
    parser.add_argument("--schema", default="WAREHOUSE")
    args = parser.parse_args()

    pem = open(args.public_key, "rb").read()
    public = serialization.load_pem_public_key(pem)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    fingerprint = base64.b64encode(hashlib.sha256(der).digest()).decode()
    account, user = args.account.upper(), args.user.upper()
    issuer = f"{account}.{user}.SHA256:{fingerprint}"

    with fakesnow.patch():
        import snowflake.connector

        conn = snowflake.connector.connect(database=args.database, schema=args.schema, paramstyle="qmark")
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {args.database}")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {args.database}.{args.schema}")
        cur.execute(f"USE SCHEMA {args.database}.{args.schema}")

        state = {"seen": {}, "results": {}, "pending": {}, "script": [], "stats": {"executed": 0, "replayed": 0, "refused": 0, "unauthorized": 0}}

        def text(value):
            # The SQL API sends every value as a string: booleans as true / false.
            if value is None:
                return None
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value)

        def run(statement, bindings):
            params = tuple(bindings[str(i)]["value"] for i in range(1, len(bindings) + 1))
            c = conn.cursor()
            c.execute(statement, params)
            try:
                rows = c.fetchall()
            except Exception:
                rows = []
            names = [d[0] for d in (c.description or [])]
            data = [[text(v) for v in row] for row in rows]
            state["stats"]["executed"] += 1
            return {
                "resultSetMetaData": {"numRows": len(data), "format": "jsonv2", "rowType": [{"name": n} for n in names]},
                "data": data,
                "code": "090001",
                "message": "Statement executed successfully.",
            }

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, status, body):
                text = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def authorized(self):
                header = self.headers.get("Authorization", "")
                if not header.startswith("Bearer ") or self.headers.get("X-Snowflake-Authorization-Token-Type") != "KEYPAIR_JWT" or not self.headers.get("User-Agent"):
                    return False
                try:
                    claims = jwt.decode(header[7:], public, algorithms=["RS256"], options={"verify_aud": False, "require": ["iss", "sub", "iat", "exp"]})
                except jwt.PyJWTError:
                    return False
                return claims["iss"] == issuer and claims["sub"] == f"{account}.{user}" and claims["exp"] - claims["iat"] <= 3600

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/standin/stats":
                    return self.answer(200, state["stats"])
                if not self.authorized():
                    state["stats"]["unauthorized"] += 1
                    return self.answer(401, {"code": "390144", "message": "JWT token is invalid."})
                if url.path.startswith("/api/v2/statements/"):
                    handle = url.path.rsplit("/", 1)[1]
                    if handle in state["pending"]:
                        left = state["pending"][handle]
                        if left > 0:
                            state["pending"][handle] = left - 1
                            return self.answer(202, {"statementHandle": handle, "code": "333334", "message": "Asynchronous execution in progress."})
                        del state["pending"][handle]
                    if handle in state["results"]:
                        return self.answer(200, state["results"][handle])
                    return self.answer(404, {"message": "no such statement"})
                return self.answer(404, {"message": "not found"})

            def do_POST(self):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if url.path == "/standin/script":
                    state["script"].extend(body.get("answers", []))
                    return self.answer(200, {"queued": len(state["script"])})
                if url.path != "/api/v2/statements":
                    return self.answer(404, {"message": "not found"})
                if not self.authorized():
                    state["stats"]["unauthorized"] += 1
                    return self.answer(401, {"code": "390144", "message": "JWT token is invalid."})
                query = parse_qs(url.query)
                request_id = query.get("requestId", [None])[0]
                try:
                    uuid.UUID(request_id or "")
                except ValueError:
                    return self.answer(400, {"message": "requestId must be a UUID"})
                retry = query.get("retry", ["false"])[0] == "true"
                if retry and request_id in state["seen"]:
                    state["stats"]["replayed"] += 1
                    handle = state["seen"][request_id]
                    return self.answer(200, state["results"][handle])
                scripted = state["script"].pop(0) if state["script"] else 200
                if scripted in (429, 503, 504):
                    state["stats"]["refused"] += 1
                    return self.answer(scripted, {"message": "try again later"})
                statement = body.get("statement")
                if not isinstance(statement, str) or not statement.strip():
                    return self.answer(400, {"message": "statement is required"})
                handle = str(uuid.uuid4())
                try:
                    result = run(statement, body.get("bindings") or {})
                except Exception as e:  # the statement's own error, as Snowflake answers it
                    return self.answer(422, {"code": "002003", "sqlState": "42S02", "message": str(e), "statementHandle": handle})
                result["statementHandle"] = handle
                state["results"][handle] = result
                state["seen"][request_id] = handle
                if scripted == 202:
                    state["pending"][handle] = 1
                    return self.answer(202, {"statementHandle": handle, "code": "333334", "message": "Asynchronous execution in progress."})
                return self.answer(200, result)

        server = HTTPServer(("127.0.0.1", 0), Handler)
        print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    sys.exit(main())
