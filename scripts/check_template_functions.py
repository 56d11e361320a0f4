"""Check that template.yaml deploys exactly the functions of the Cargo workspace.

Every package directory under functions/ must appear in the template as an
AWS::Serverless::Function built with `rust-cargolambda` from a binary of the same name, with its
package directory as CodeUri, and every such template function must name a binary that exists
under functions/. Each function must also
run on provided.al2023 with the Architecture parameter, use its own execution role, write to a log
group with a retention, and be reachable only through IAM-authorized HTTP API routes.

Run with the project's venv (local/install.sh), which has cfn-lint's template decoder:
    .venv/bin/python scripts/check_template_functions.py [template.yaml]
Exits 1 and prints one line per finding when anything does not match.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
SERVERLESS_FUNCTION = "AWS::Serverless::Function"
EXPECTED_RUNTIME = "provided.al2023"
EXPECTED_BUILD_METHOD = "rust-cargolambda"


def workspace_binaries(functions_dir: Path) -> tuple[set[str], list[str]]:
    """Read the binary name of each package under functions_dir, with findings for bad packages."""
    binaries: set[str] = set()
    findings: list[str] = []
    for manifest in sorted(functions_dir.glob("*/Cargo.toml")):
        directory = manifest.parent.name
        package = tomllib.loads(manifest.read_text()).get("package", {}).get("name")
        if package != directory:
            findings.append(
                f"functions/{directory}/Cargo.toml: package name {package!r} differs from its "
                f"directory; the binary, the route and the template use the directory name"
            )
        binaries.add(directory)
    return binaries, findings


def function_setting(function: dict, globals_function: dict, key: str):
    """Return a function property, falling back to the template's Globals like SAM does."""
    properties = function.get("Properties", {})
    return properties[key] if key in properties else globals_function.get(key)


def check_function(
    where: str, function: dict, globals_function: dict, resources: dict
) -> tuple[str | None, list[str]]:
    """Check one template function, named `where` in findings, and return the binary it builds."""
    findings: list[str] = []
    metadata = function.get("Metadata", {})
    binary = metadata.get("BuildProperties", {}).get("Binary")

    if metadata.get("BuildMethod") != EXPECTED_BUILD_METHOD:
        findings.append(f"{where}: Metadata.BuildMethod must be {EXPECTED_BUILD_METHOD}")
    if not isinstance(binary, str) or not binary:
        findings.append(f"{where}: Metadata.BuildProperties.Binary must name the function binary")
        binary = None

    code_uri = function_setting(function, globals_function, "CodeUri")
    if binary is not None and code_uri != f"functions/{binary}":
        findings.append(
            f"{where}: CodeUri is {code_uri!r}, expected functions/{binary} so that sam build "
            f"resolves the features of that package alone"
        )

    runtime = function_setting(function, globals_function, "Runtime")
    if runtime != EXPECTED_RUNTIME:
        findings.append(f"{where}: Runtime is {runtime!r}, expected {EXPECTED_RUNTIME}")
    architectures = function_setting(function, globals_function, "Architectures")
    if architectures != [{"Ref": "Architecture"}]:
        findings.append(f"{where}: Architectures must be [!Ref Architecture], found {architectures!r}")

    role = function.get("Properties", {}).get("Role")
    if not (isinstance(role, dict) and "Fn::GetAtt" in role):
        findings.append(f"{where}: Role must be its own execution role (!GetAtt <Role>.Arn)")

    log_group_ref = function.get("Properties", {}).get("LoggingConfig", {}).get("LogGroup")
    log_group_id = log_group_ref.get("Ref") if isinstance(log_group_ref, dict) else None
    log_group = resources.get(log_group_id, {})
    if log_group.get("Type") != "AWS::Logs::LogGroup":
        findings.append(f"{where}: LoggingConfig.LogGroup must !Ref a log group of this template")
    elif "RetentionInDays" not in log_group.get("Properties", {}):
        findings.append(f"{where}: log group {log_group_id} has no RetentionInDays")

    events = function.get("Properties", {}).get("Events", {})
    if not events:
        findings.append(f"{where}: has no HttpApi route")
    for name, event in events.items():
        properties = event.get("Properties", {})
        if event.get("Type") != "HttpApi":
            findings.append(f"{where}: event {name} is {event.get('Type')!r}, expected HttpApi")
        elif properties.get("Auth", {}).get("Authorizer") != "AWS_IAM":
            findings.append(f"{where}: route {name} must set Auth.Authorizer: AWS_IAM")

    return binary, findings


def main() -> int:
    template_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"
    template, matches = decode(str(template_path))
    if matches or template is None:
        for match in matches:
            print(f"{template_path}: cannot parse: {match}")
        return 1

    findings: list[str] = []
    workspace, package_findings = workspace_binaries(ROOT / "functions")
    findings.extend(package_findings)

    resources = template.get("Resources", {})
    globals_function = template.get("Globals", {}).get("Function", {})
    deployed: dict[str, str] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != SERVERLESS_FUNCTION:
            continue
        binary, function_findings = check_function(
            f"{template_path.name}: {logical_id}", resource, globals_function, resources
        )
        findings.extend(function_findings)
        if binary is None:
            continue
        if binary in deployed:
            findings.append(
                f"{template_path.name}: {logical_id} and {deployed[binary]} both build binary "
                f"{binary}"
            )
        deployed[binary] = logical_id

    for binary in sorted(workspace - deployed.keys()):
        findings.append(
            f"functions/{binary}: not deployed: add an {SERVERLESS_FUNCTION} with "
            f"BuildProperties.Binary: {binary} to {template_path.name}"
        )
    for binary in sorted(deployed.keys() - workspace):
        findings.append(
            f"{template_path.name}: {deployed[binary]} builds binary {binary}, but functions/{binary}/ "
            f"does not exist in the workspace"
        )

    for finding in findings:
        print(finding)
    if findings:
        print(f"template functions: {len(findings)} finding(s)")
        return 1
    print(f"template functions: all {len(workspace)} workspace functions deployed, none extra")
    return 0


if __name__ == "__main__":
    sys.exit(main())
