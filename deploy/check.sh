#!/usr/bin/env bash
# Checks the deploy templates without an AWS account: cfn-lint validates the CloudFormation
# template against AWS's resource specifications; the Terraform files must parse as HCL.
set -euo pipefail
cd "$(dirname "$0")"
cfn-lint cloudformation/portico.yaml
python3 - <<'PY'
import hcl2
for name in ("main.tf", "variables.tf", "outputs.tf"):
    with open(f"terraform/{name}") as f:
        hcl2.load(f)
print("terraform: main.tf, variables.tf, outputs.tf parse")
PY
# The dashboards: saved objects that refer only to each other, and panels that chart only metrics
# Portico exports (the names are looked up in the source).
python3 - <<'PY'
import glob, json, re
objects = [json.loads(line) for line in open("dashboards/opensearch-saved-objects.ndjson") if line.strip()]
ids = {(o["type"], o["id"]) for o in objects}
for o in objects:
    for ref in o.get("references", []):
        assert (ref["type"], ref["id"]) in ids, f"{o['id']} refers to a missing {ref}"
    search = o["attributes"].get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
    if search:
        json.loads(search)
    for field in ("visState", "panelsJSON"):
        if field in o["attributes"]:
            json.loads(o["attributes"][field])
source = "".join(open(f).read() for f in glob.glob("../crates/*/src/**/*.rs", recursive=True))
grafana = json.load(open("dashboards/grafana-portico.json"))
for panel in grafana["panels"]:
    for target in panel["targets"]:
        for name in re.findall(r"portico_[a-z_]+", target["expr"]):
            name = re.sub(r"_(bucket|sum|count)$", "", name)
            assert f'"{name}"' in source, f"panel {panel['title']!r} charts {name}, which Portico does not export"
print(f"dashboards: {len(objects)} saved objects, {len(grafana['panels'])} Grafana panels check out")
PY
# The local host's service recipe: systemd checks the units (with a stand-in binary, since the
# real one is built later), and the container image runs as a non-root user with the data dir as
# a volume, built with the toolchain Cargo.toml asks for. (Their PORTICO_* settings are loaded by
# a test in portico-config, which refuses any Portico does not know.)
if command -v systemd-analyze >/dev/null 2>&1; then
  units=$(mktemp -d)
  for unit in local/portico.service local/portico-backup.service local/portico-backup.timer; do
    sed 's#/usr/local/bin/portico#/bin/true#' "$unit" > "$units/$(basename "$unit")"
  done
  out=$(systemd-analyze verify "$units"/* 2>&1 || true)
  rm -rf "$units"
  if [ -n "$out" ]; then echo "$out"; exit 1; fi
  echo "systemd units: portico.service, portico-backup.service, portico-backup.timer verify"
fi
python3 - <<'PY'
import re
docker = open("local/Dockerfile").read()
workspace = open("../Cargo.toml").read()
rust = re.search(r'rust-version = "([0-9.]+)"', workspace).group(1)
assert f"FROM rust:{rust}-" in docker, f"the image builds with another Rust than {rust}"
assert re.search(r"^USER 10001", docker, re.M), "the image must run as a non-root user"
assert 'VOLUME ["/var/lib/portico"]' in docker and "PORTICO_DATA_DIR=/var/lib/portico" in docker
print("Dockerfile: non-root, data dir volume, Rust", rust)
PY
