"""Print the dependencies of some of the project's extras, one per line, from pyproject.toml.

The Dockerfiles install these in a layer of their own, before the source is copied, so a change
of code does not reinstall torch:  python3 deploy/requirements.py embedder
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

project = tomllib.loads(
    Path(__file__).resolve().parent.parent.joinpath("pyproject.toml").read_text()
)["project"]
print(
    "\n".join(
        [
            *project["dependencies"],
            *(d for extra in sys.argv[1:] for d in project["optional-dependencies"][extra]),
        ]
    )
)
