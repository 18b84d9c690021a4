"""What a run's checkpoint dataset costs in storage: versions kept and bytes per version, read back through the API.

Run a rehearsal that keeps its folder, then point this at it::

    .venv/bin/kaggle-kit rehearse --keep --workdir /tmp/rh
    .venv/bin/python benchmarks/mirror_storage.py /tmp/rh

It serves the rehearsal's saved stand-in state on loopback and reads each checkpoint dataset's versions and files
with the official client, as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path


def _dataset(api: object, owner: str, slug: str) -> object:
    from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

    request = ApiGetDatasetRequest()
    request.owner_slug, request.dataset_slug = owner, slug
    with api.build_kaggle_client() as kaggle:  # type: ignore[attr-defined]
        return kaggle.datasets.dataset_api_client.get_dataset(request)


def measure(workdir: Path, owner: str) -> list[dict[str, object]]:
    """Per checkpoint dataset of ``owner`` in the rehearsal's state: versions created and kept, and per kept
    version its bytes and checkpoints."""
    key = secrets.token_hex(16)
    home = Path(tempfile.mkdtemp(prefix="mirror-storage-"))
    os.environ.update({"HOME": str(home), "KAGGLE_CONFIG_DIR": str(home / ".kaggle"), "KAGGLE_USERNAME": owner,
                       "KAGGLE_KEY": key})
    from kaggle_kit.kaggle_api import make_api, point_client_at
    from kaggle_kit.sim.server import SimServer

    rows = []
    with SimServer(workdir / "state", username=owner, key=key) as server:
        point_client_at(server.url)
        os.environ["KAGGLE_KIT_API_ENDPOINT"] = server.url
        api = make_api()
        for listed in api.dataset_list(mine=True):
            ref = str(listed.ref)
            dataset = _dataset(api, *ref.split("/"))
            kept = {}
            for version in dataset.versions:
                files = api.dataset_list_files(f"{ref}/{version.version_number}", page_size=200).dataset_files
                kept[version.version_number] = {
                    "bytes": sum(int(f.total_bytes) for f in files),
                    "checkpoints": sum(1 for f in files if f.name.endswith(".manifest.json")),
                }
            if not any(v["checkpoints"] for v in kept.values()):
                continue  # the code dataset
            rows.append({"dataset": ref, "versions_created": dataset.current_version_number,
                         "versions_kept": len(kept), "kept": kept,
                         "bytes_stored": sum(int(v["bytes"]) for v in kept.values())})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="a rehearsal folder kept with --keep")
    parser.add_argument("--owner", help="the Kaggle user of the rehearsal (default: kernel-metadata.json's owner)")
    args = parser.parse_args(argv)
    from kaggle_kit.handles import parse_kernel

    owner = args.owner or parse_kernel(json.loads(Path("kernel-metadata.json").read_text())["id"]).owner
    for row in measure(args.workdir, owner):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
