#!/usr/bin/env python3
"""The API against its own OpenAPI document, with schemathesis.

Starts `portico serve --demo` on free loopback ports with a fresh data dir, then runs schemathesis
over every operation of `/openapi.json` as a platform admin and as a scientist (examples,
coverage, fuzzing and stateful phases) with the checks not_a_server_error,
status_code_conformance, content_type_conformance, response_schema_conformance and
negative_data_rejection: every answer must be one the document describes.

Usage: scripts/openapi_conformance.py PATH_TO_PORTICO_BINARY
Prints schemathesis's report per caller and ends with "N passed, M failed"; exits non-zero on any
failure.
"""

import subprocess
import sys
import tempfile

from portico_server import Server

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
])
# Bounded: examples per operation, and a wall-clock limit for each run.
EXAMPLES = "50"
RUN_TIMEOUT = 600


def main():
    binary = sys.argv[1]
    passed, failed = 0, 0
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(binary, data_dir)
        try:
            callers = {
                "admin": server.token("admin@portico.example", "portico-admins"),
                "scientist": server.token("carol@acme.example"),
            }
            for name, token in callers.items():
                run = subprocess.run(
                    ["schemathesis", "run", f"http://{server.addrs['http']}/openapi.json",
                     "-H", f"Authorization: Bearer {token}", "-c", CHECKS, "-n", EXAMPLES,
                     "--seed", "1", "--no-color"],
                    capture_output=True, text=True, timeout=RUN_TIMEOUT)
                print(f"== schemathesis as {name}")
                print(run.stdout[-4000:])
                if run.returncode == 0:
                    passed += 1
                    print(f"ok   every operation conforms, as {name}")
                else:
                    failed += 1
                    print(f"FAIL schemathesis found non-conforming answers as {name}")
                    print(run.stderr[-2000:])
        finally:
            server.stop()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
