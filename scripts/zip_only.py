"""The `scripts/build --zip-only` template steps: drop the container-image functions before
`sam build` (no Docker engine needed), then mark the built template so `sam deploy` refuses it.

A zip-only build lacks VectorFunction and IngestFunction, so deploying it would delete them from
a running stack. The marker is a parameter without a default whose only allowed value names the
problem, plus a rule that never holds: CloudFormation rejects the change set before it touches
any resource, with the rule's message. Run with any Python that has PyYAML (both venvs do).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

MARKER = "ZipOnlyBuildNotDeployable"
MESSAGE = (
    "This .aws-sam/build came from scripts/build --zip-only (for tests): it has no container-image"
    " functions. Run scripts/build with a Docker engine, then sam deploy."
)


def image_functions(doc: dict[str, Any]) -> list[str]:
    """Logical ids of the functions packaged as container images."""
    return [
        name
        for name, res in doc["Resources"].items()
        if res.get("Properties", {}).get("PackageType") == "Image"
    ]


def strip_images(doc: dict[str, Any]) -> list[str]:
    """Remove the image functions; their ids. (What still names them, e.g. the dashboard, stays:
    the result is for running the zip artifacts locally and is marked not deployable.)"""
    removed = image_functions(doc)
    for name in removed:
        del doc["Resources"][name]
    return removed


def mark_not_deployable(doc: dict[str, Any]) -> None:
    """Make CloudFormation reject the template at change-set creation, saying why."""
    doc.setdefault("Parameters", {})[MARKER] = {
        "Type": "String",
        "AllowedValues": ["rebuild-with-docker"],
        "Description": MESSAGE,
    }
    doc.setdefault("Rules", {})[MARKER] = {
        "Assertions": [
            {"Assert": {"Fn::Equals": ["zip-only", "deployable"]}, "AssertDescription": MESSAGE}
        ]
    }
    doc["Description"] = f"NOT DEPLOYABLE (zip-only build). {doc.get('Description', '')}".strip()


def main(argv: list[str]) -> int:
    """`strip <src> <dst>`: source template without image functions (CloudFormation YAML tags);
    `mark <built template>`: add the marker in place (sam build writes plain YAML)."""
    import yaml

    command, *paths = argv
    if command == "strip":
        from samtranslator.yaml_helper import yaml_parse

        doc = yaml_parse(Path(paths[0]).read_text())
        removed = strip_images(doc)
        Path(paths[1]).write_text(yaml.safe_dump(doc, sort_keys=False))
        print(f"zip-only: left out {', '.join(removed)}")
    elif command == "mark":
        path = Path(paths[0])
        doc = yaml.safe_load(path.read_text())
        mark_not_deployable(doc)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
