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
