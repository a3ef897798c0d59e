"""Print the requirements of pyproject.toml's `dependencies` plus the named extras, one a line (an
extra naming this project's other extras is expanded). The Dockerfiles install these in a layer of
their own before copying the sources, so a code edit does not reinstall torch.

    python pyproject_requirements.py server > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).with_name("pyproject.toml")


def requirements(extras: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    self_reference = re.compile(rf"{re.escape(project['name'])}\[(?P<extras>[^\]]+)\]")
    found = list(project.get("dependencies", []))
    pending, expanded = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in expanded:
            continue
        expanded.add(extra)
        for requirement in project["optional-dependencies"][extra]:
            if match := self_reference.fullmatch(requirement):
                pending += [name.strip() for name in match["extras"].split(",")]
            elif requirement not in found:
                found.append(requirement)
    return found


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:])))
