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

from portico_server import run_checks

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


def checks(server, check):
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
        check(f"every operation conforms, as {name}", run.returncode == 0,
              run.stderr[-2000:])


if __name__ == "__main__":
    sys.exit(run_checks(checks))
