"""The Bento store: built Bentos as ``.bento`` archives in object storage, where a cluster's
pods fetch them from.

A release in a cluster runs the platform image and imports its Bento at start, so shipping a model
is an upload, not an image build and push. BentoML's own export can write to S3 only through
fsspec's s3fs, which the stack does not otherwise need; the archive is made locally by
``bentoml export`` and moved with the same pyarrow filesystem that reads the landing zone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pyarrow.fs import FileSystem, FileType, copy_files

TIMEOUT_S = 600
"""A build, an export or an import of a Bento of a few models takes seconds to a minute."""


def bento_path(root: str, bento_tag: str) -> str:
    """``<root>/<name>/<version>.bento``: one archive per tag, never overwritten by another."""
    name, _, version = bento_tag.partition(":")
    if not name or not version or "/" in bento_tag:
        raise ValueError(f"a Bento tag is name:version, got {bento_tag!r}")
    return f"{root.rstrip('/')}/{name}/{version}.bento"


def publish(bento_tag: str, bentoml_home: str, filesystem: FileSystem, root: str) -> str:
    """Export the Bento from ``bentoml_home`` into the store, unless it is there already (a tag
    is immutable); its path in the store."""
    target = bento_path(root, bento_tag)
    if filesystem.get_file_info(target).type == FileType.File:
        return target
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "export.bento"
        bentoml(["export", bento_tag, str(archive)], bentoml_home)
        filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        copy_files(str(archive), target, destination_filesystem=filesystem)
    return target


def fetch(bento_tag: str, bentoml_home: str, filesystem: FileSystem, root: str) -> None:
    """Import the Bento from the store into ``bentoml_home``."""
    source = bento_path(root, bento_tag)
    if filesystem.get_file_info(source).type != FileType.File:
        raise FileNotFoundError(f"{bento_tag} is not in the Bento store: {source} does not exist")
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "import.bento"
        copy_files(source, str(archive), source_filesystem=filesystem)
        bentoml(["import", str(archive)], bentoml_home)


def bentoml(arguments: list[str], bentoml_home: str, cwd: Path | None = None) -> str:
    """``bentoml <arguments>`` against the store in ``bentoml_home``; its output. A build runs
    in its context directory: BentoML refuses a bentofile outside the working directory.

    A process of its own: BentoML reads its home when imported, so one process serves one home.
    """
    # A launcher: the command inherits this environment, with its home and no tracking.
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", *arguments],
        cwd=cwd,
        env={**os.environ, "BENTOML_HOME": bentoml_home, "BENTOML_DO_NOT_TRACK": "true"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bentoml {arguments[0]} failed:\n{done.stderr[-4000:]}")
    return done.stdout
