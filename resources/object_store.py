"""Files on a local disk or S3 through one pyarrow filesystem, whichever the URI names.

The landing zone and the Bento store take the lakehouse's storage options (delta-rs names), so
one set of S3 settings serves them all.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyarrow.fs import FileSystem, LocalFileSystem, S3FileSystem

S3_SCHEME = "s3://"
_S3_OPTIONS = {"AWS_ENDPOINT_URL": "endpoint_override", "AWS_REGION": "region"}
"""The lakehouse's delta-rs storage options, as pyarrow's S3FileSystem names them. The keys are
not options: pyarrow reads them from the environment (or a cloud identity), as delta-rs does."""


def open_filesystem(uri: str, storage_options: Mapping[str, str]) -> tuple[FileSystem, str]:
    """pyarrow's filesystem for ``uri`` and the root as it names it (``bucket/prefix`` on S3, the
    folder locally). An S3 option it cannot take is refused, not dropped, so a missing credential
    or endpoint shows up here rather than as an access error."""
    if not uri.startswith(S3_SCHEME):
        return LocalFileSystem(), uri
    unknown = set(storage_options) - {*_S3_OPTIONS, "AWS_ALLOW_HTTP"}
    if unknown:
        raise ValueError(f"S3 storage options not understood: {sorted(unknown)}")
    options = {_S3_OPTIONS[k]: v for k, v in storage_options.items() if k in _S3_OPTIONS}
    # An endpoint URL's own scheme wins; the scheme only matters for one given as host:port.
    http = storage_options.get("AWS_ALLOW_HTTP", "").lower() == "true"
    return S3FileSystem(scheme="http" if http else "https", **options), uri.removeprefix(S3_SCHEME)
