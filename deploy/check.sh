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
