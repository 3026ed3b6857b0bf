"""Where evidence bytes live, behind one small interface: content-addressed
(the key is the sha256), written once, never changed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

CHUNK = 256 * 1024


class BlobStore(Protocol):
    def exists(self, sha256: str) -> bool: ...

    def put(self, sha256: str, source: Path) -> None:
        """Stores the file at `source` under its hash (no-op when present)."""
        ...

    def read(self, sha256: str) -> Iterator[bytes]: ...

    def delete(self, sha256: str) -> None:
        """Deletes the bytes with this hash (no-op when absent)."""
        ...


class LocalBlobStore:
    """A directory: `<root>/ab/cd/<sha256>`; files appear whole (rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def put(self, sha256: str, source: Path) -> None:
        target = self._path(sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        # A staging file of its own: uploads of the same bytes may race here.
        fd, staged_name = tempfile.mkstemp(dir=target.parent, prefix=".staging-")
        staged = Path(staged_name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out)
                out.flush()
                os.fsync(out.fileno())
            # Atomic: readers see the whole object or none; a racing writer of
            # the same content replaces it with identical bytes.
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)

    def read(self, sha256: str) -> Iterator[bytes]:
        with self._path(sha256).open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)


class S3BlobStore:
    """An S3-compatible bucket; objects are keyed `evidence/<sha256>`."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str = "",
        region: str = "us-east-1",
        access_key_id: str = "",
        secret_access_key: str = "",
    ) -> None:
        import boto3

        self.bucket = bucket
        self._s3: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
        )

    @staticmethod
    def _key(sha256: str) -> str:
        return f"evidence/{sha256}"

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(sha256))
            return True
        except ClientError as exc:
            if _missing(exc):
                return False
            raise

    def put(self, sha256: str, source: Path) -> None:
        if self.exists(sha256):
            return
        self._s3.upload_file(str(source), self.bucket, self._key(sha256))

    def read(self, sha256: str) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(sha256))["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(sha256) from exc  # as the local store says it
            raise
        yield from body.iter_chunks(CHUNK)

    def delete(self, sha256: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(sha256))


def _missing(exc: Any) -> bool:
    """Whether an S3 error says the object is not there."""
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")
