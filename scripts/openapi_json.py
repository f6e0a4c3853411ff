"""Prints the backend's OpenAPI document (what `/openapi.json` serves) without starting a server.

`scripts/gen-api-types` turns it into the frontend's types. The app is built on a throwaway data home
and an in-memory database: `create_app` connects to nothing, but its storage makes its folder.
"""

from __future__ import annotations

import json
import sys
import tempfile

from backend.core.config import Settings
from backend.main import create_app


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=data_dir, database_url="sqlite://", secret_key="x" * 32)
        spec = create_app(settings).openapi()
    json.dump(spec, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
