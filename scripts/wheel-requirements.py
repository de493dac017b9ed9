"""Print what a wheel requires, with the given extras, one requirement a line.

    python wheel-requirements.py kubetune-0.1.0-py3-none-any.whl operator > requirements.txt

operator/Dockerfile installs these before the wheel itself, so the layer holding the
dependencies stays cached while only our code changes. Standard library only.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import zipfile


def requirements(wheel: str, extras: set[str]) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    dist = importlib.metadata.PathDistribution(
        zipfile.Path(wheel, metadata.rsplit("/", 1)[0] + "/")  # type: ignore[arg-type]
    )
    wanted = []
    for requirement in dist.requires or []:
        spec, _, marker = requirement.partition(";")
        extra = re.fullmatch(r"\s*extra\s*==\s*['\"]([^'\"]+)['\"]\s*", marker)
        if not marker.strip() or (extra and extra[1] in extras):
            wanted.append(spec.strip())
        elif "extra" not in marker:
            wanted.append(requirement.strip())  # a platform or Python marker: pip decides
    return wanted


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], set(sys.argv[2:]))))
