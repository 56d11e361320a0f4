"""Check the least-privilege rules of template.yaml's function policies and KMS key policy.

The rules, each a finding when broken:
- every function role has exactly one inline policy and no other policy, with no wildcard action
  and no "*" resource;
- only deno_connection writes the connections table and only deno_capability_admin writes the
  capabilities table, so the tools can read a connection but never change it;
- a function may call only kms:GenerateDataKey and kms:Decrypt, always with a condition on
  kms:EncryptionContext:purpose, and seals and opens exactly the purposes in SEALS and OPENS;
- the key policy grants those same calls for those same purposes to those same roles, and grants
  no cryptographic use of the key to anyone else.

Run with the project's venv (local/install.sh), which has cfn-lint's template decoder:
    .venv/bin/python scripts/check_template_policies.py [template.yaml]
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent

TOKEN = "deno-connection"
RECORD = "sandbox-record"

# Encryption-context purposes each function seals with kms:GenerateDataKey. Absent means none.
SEALS = {
    "deno_connection": {TOKEN},
    "deno_create_sandbox": {RECORD},
    "deno_manage_sandbox": {RECORD},
}
# Purposes each function opens with kms:Decrypt: every function that calls Deno opens the user's
# token, and every function that reads sandbox records opens them. deno_create_sandbox opens a
# record when a retried call returns the sandbox the first call created.
OPENS = {
    name: {TOKEN, RECORD}
    for name in (
        "deno_create_sandbox",
        "deno_exec",
        "deno_read_file",
        "deno_write_file",
        "deno_list_sandboxes",
        "deno_manage_sandbox",
        "deno_session_cleanup",
    )
}
# Tables that only the named function may write.
TABLE_WRITERS = {
    "ConnectionsTable": "deno_connection",
    "CapabilitiesTable": "deno_capability_admin",
}
DYNAMODB_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
}
KMS_ALLOWED = {"kms:GenerateDataKey", "kms:Decrypt"}
# Key policy actions that use or hand out the key's cryptographic power.
KMS_CRYPTO_PREFIXES = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt",
    "kms:GenerateDataKey",
    "kms:CreateGrant",
)
PURPOSE_KEY = "kms:EncryptionContext:purpose"

Grants = dict[tuple[str, str], set[str]]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def getatt_id(value) -> str | None:
    """Return the logical id of a `!GetAtt Id.Arn` value, or None for anything else."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return target[0] if isinstance(target, list) else str(target).split(".")[0]
    return None


def purposes_of(statement: dict) -> set[str] | None:
    """Return the purposes a statement's StringEquals condition allows, or None without one."""
    purposes = statement.get("Condition", {}).get("StringEquals", {}).get(PURPOSE_KEY)
    return None if purposes is None else set(as_list(purposes))


def function_roles(resources: dict) -> dict[str, str]:
    """Map each function role's logical id to the binary of the function that uses it."""
    roles = {}
    for resource in resources.values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        role_id = getatt_id(resource.get("Properties", {}).get("Role"))
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if role_id and binary:
            roles[role_id] = binary
    return roles


def check_role_policies(resources: dict, roles: dict[str, str]) -> tuple[Grants, list[str]]:
    """Check every function role's policy and collect its KMS grants per (binary, action)."""
    findings: list[str] = []
    grants: Grants = {}
    policy_count = dict.fromkeys(roles, 0)

    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        properties = resource.get("Properties", {})
        if kind == "AWS::IAM::Role" and logical_id in roles:
            if properties.get("Policies") or properties.get("ManagedPolicyArns"):
                findings.append(
                    f"{logical_id}: remove Policies and ManagedPolicyArns from the function role; "
                    f"its one policy is an AWS::IAM::RolePolicy"
                )
        if kind == "AWS::IAM::Policy":
            attached = {
                ref.get("Ref") for ref in as_list(properties.get("Roles", [])) if isinstance(ref, dict)
            }
            for role_id in attached & roles.keys():
                findings.append(f"{logical_id}: attaches a second policy to function role {role_id}")
        if kind != "AWS::IAM::RolePolicy":
            continue
        role_ref = properties.get("RoleName")
        role_id = role_ref.get("Ref") if isinstance(role_ref, dict) else None
        if role_id not in roles:
            continue
        policy_count[role_id] += 1
        binary = roles[role_id]
        statements = as_list(properties.get("PolicyDocument", {}).get("Statement", []))
        for index, statement in enumerate(statements):
            where = f"{logical_id} statement {statement.get('Sid', index)}"
            findings.extend(check_statement(where, binary, statement, grants))

    for role_id, count in policy_count.items():
        if count != 1:
            findings.append(f"{role_id}: has {count} inline policies, expected exactly one")
    return grants, findings


def check_statement(where: str, binary: str, statement: dict, grants: Grants) -> list[str]:
    """Check one statement of a function policy and record its KMS grants."""
    findings: list[str] = []
    if statement.get("Effect") != "Allow" or "NotAction" in statement or "NotResource" in statement:
        return [f"{where}: use only Allow statements with Action and Resource"]
    actions = [str(action) for action in as_list(statement.get("Action", []))]
    resources = as_list(statement.get("Resource", []))

    for action in actions:
        if "*" in action:
            findings.append(f"{where}: wildcard action {action}; list the calls instead")
    for resource in resources:
        if resource == "*" or (isinstance(resource, str) and resource.endswith(":*")):
            findings.append(f"{where}: resource {resource!r}; name the resource instead")

    tables = {getatt_id(resource) for resource in resources}
    for table, writer in TABLE_WRITERS.items():
        written = DYNAMODB_WRITES.intersection(actions)
        if table in tables and written and binary != writer:
            findings.append(
                f"{where}: {binary} may {', '.join(sorted(written))} on {table}, which only "
                f"{writer} may write"
            )

    for action in (a for a in actions if a.startswith("kms:")):
        if action not in KMS_ALLOWED:
            findings.append(
                f"{where}: {action} is not needed: functions call only {sorted(KMS_ALLOWED)}"
            )
            continue
        purposes = purposes_of(statement)
        if purposes is None:
            findings.append(f"{where}: {action} needs a StringEquals condition on {PURPOSE_KEY}")
            continue
        grants.setdefault((binary, action), set()).update(purposes)
    return findings


def key_policy_grants(key: dict, roles: dict[str, str]) -> tuple[Grants, list[str]]:
    """Collect the key policy's KMS grants per (binary, action) and flag crypto grants to others."""
    findings: list[str] = []
    grants: Grants = {}
    statements = key.get("Properties", {}).get("KeyPolicy", {}).get("Statement", [])
    for index, statement in enumerate(as_list(statements)):
        where = f"DataKey key policy statement {statement.get('Sid', index)}"
        if statement.get("Effect") != "Allow":
            continue
        actions = [str(action) for action in as_list(statement.get("Action", []))]
        crypto = [a for a in actions if a == "kms:*" or a.startswith(KMS_CRYPTO_PREFIXES)]
        if not crypto:
            continue
        arn_condition = statement.get("Condition", {}).get("ArnEquals", {}).get("aws:PrincipalArn")
        principals = [getatt_id(value) for value in as_list(arn_condition or [])]
        if not principals or any(principal not in roles for principal in principals):
            findings.append(f"{where}: grants {', '.join(crypto)} beyond the function roles")
            continue
        purposes = purposes_of(statement)
        if purposes is None:
            findings.append(f"{where}: needs a StringEquals condition on {PURPOSE_KEY}")
            continue
        for principal in principals:
            for action in crypto:
                grants.setdefault((roles[principal], action), set()).update(purposes)
    return grants, findings


def expected_grants(binaries: set[str]) -> Grants:
    grants: Grants = {}
    for binary in binaries:
        if SEALS.get(binary):
            grants[(binary, "kms:GenerateDataKey")] = set(SEALS[binary])
        if OPENS.get(binary):
            grants[(binary, "kms:Decrypt")] = set(OPENS[binary])
    return grants


def describe(grants: Grants, key: tuple[str, str]) -> str:
    return ", ".join(sorted(grants.get(key, set()))) or "nothing"


def main() -> int:
    template_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"
    template, matches = decode(str(template_path))
    if matches or template is None:
        for match in matches:
            print(f"{template_path}: cannot parse: {match}")
        return 1

    resources = template.get("Resources", {})
    roles = function_roles(resources)
    iam_grants, findings = check_role_policies(resources, roles)

    keys = [resource for resource in resources.values() if resource.get("Type") == "AWS::KMS::Key"]
    if len(keys) != 1:
        findings.append(f"expected one AWS::KMS::Key, found {len(keys)}")
        key_grants: Grants = {}
    else:
        key_grants, key_findings = key_policy_grants(keys[0], roles)
        findings.extend(key_findings)

    expected = expected_grants(set(roles.values()))
    for grant in sorted(expected.keys() | iam_grants.keys() | key_grants.keys()):
        binary, action = grant
        if iam_grants.get(grant, set()) != expected.get(grant, set()):
            findings.append(
                f"{binary}: its policy allows {action} for {describe(iam_grants, grant)}, "
                f"expected {describe(expected, grant)}"
            )
        if key_grants.get(grant, set()) != expected.get(grant, set()):
            findings.append(
                f"{binary}: the key policy allows {action} for {describe(key_grants, grant)}, "
                f"expected {describe(expected, grant)}"
            )

    for finding in findings:
        print(f"{template_path.name}: {finding}")
    if findings:
        print(f"template policies: {len(findings)} finding(s)")
        return 1
    print(f"template policies: {len(roles)} function roles least-privilege, key policy matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
