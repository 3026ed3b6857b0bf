"""Where evidence bytes live, behind one small interface: content-addressed
(the key is the sha256), written once, never changed but to replace a copy
found damaged (not its size)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from casemesh.platform.errors import Unavailable

CHUNK = 256 * 1024


class BlobStore(Protocol):
    def exists(self, sha256: str) -> bool: ...

    def put(self, sha256: str, source: Path) -> None:
        """Stores the file at `source` under its hash: a no-op when a copy of
        its size is there; one of another size (cut short, or grown) is
        damaged, and replaced."""
        ...

    def read(self, sha256: str) -> Iterator[bytes]: ...

    def delete(self, sha256: str) -> None:
        """Deletes the bytes with this hash (no-op when absent)."""
        ...

    def sweep(self, before: float) -> int:
        """Deletes what stores left unfinished, untouched since `before` (a
        Unix time): a process killed mid-`put`. Returns how many went."""
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
        """Stores the bytes whole, and durably before it returns (an upload
        is recorded next): the file, the rename and any folder made for it
        are flushed to disk."""
        target = self._path(sha256)
        if _size_of(target) == source.stat().st_size:
            return
        made = [p for p in (target.parent.parent, target.parent) if not p.exists()]
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
            for folder in [target.parent, *(p.parent for p in made)]:
                _fsync_folder(folder)
        finally:
            staged.unlink(missing_ok=True)

    def sweep(self, before: float) -> int:
        removed = 0
        for staged in self.root.glob("*/*/.staging-*"):
            with contextlib.suppress(FileNotFoundError):
                if staged.stat().st_mtime < before:
                    staged.unlink()
                    removed += 1
        return removed

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

    PREFIX = "evidence/"

    @classmethod
    def _key(cls, sha256: str) -> str:
        return f"{cls.PREFIX}{sha256}"

    def exists(self, sha256: str) -> bool:
        return self._size(sha256) is not None

    def _size(self, sha256: str) -> int | None:
        """The stored object's size; None when there is none."""
        from botocore.exceptions import ClientError

        with _reachable():
            try:
                head = self._s3.head_object(Bucket=self.bucket, Key=self._key(sha256))
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
        size: int = head["ContentLength"]
        return size

    def put(self, sha256: str, source: Path) -> None:
        if self._size(sha256) == source.stat().st_size:
            return
        with _reachable():
            self._s3.upload_file(str(source), self.bucket, self._key(sha256))

    def read(self, sha256: str) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        with _reachable():
            try:
                body = self._s3.get_object(Bucket=self.bucket, Key=self._key(sha256))["Body"]
            except ClientError as exc:
                if _missing(exc):
                    raise FileNotFoundError(sha256) from exc  # as the local store says it
                raise
            yield from body.iter_chunks(CHUNK)

    def delete(self, sha256: str) -> None:
        with _reachable():
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(sha256))

    def sweep(self, before: float) -> int:
        """Aborts the multi-part uploads under the store's prefix begun before
        `before`: an object appears whole or not at all, but a process killed
        mid-`put` of a large file leaves its parts (the file's bytes) in the
        bucket, kept and billed, untouched by any deletion, until aborted.
        Needs s3:ListBucketMultipartUploads on the bucket and
        s3:AbortMultipartUpload on the objects."""
        from botocore.exceptions import ClientError

        aborted = 0
        with _reachable():
            pages = self._s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.PREFIX
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() >= before:
                        continue  # perhaps another replica's, under way
                    try:
                        self._s3.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    except ClientError as exc:
                        # Completed or aborted since it was listed.
                        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                            continue
                        raise
                    aborted += 1
        return aborted


def _size_of(path: Path) -> int | None:
    """The file's size; None when there is none."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _fsync_folder(folder: Path) -> None:
    """Flushes a folder's entries (a rename into it, a folder made in it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Answers of a bucket that will do later what it cannot do now.
_LATER = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"})


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    """An object store that cannot be reached, or answers 5xx or "slow
    down", is away for now: the call is UNAVAILABLE (the caller may retry),
    not a failure of ours."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 or exc.response.get("Error", {}).get("Code") in _LATER:
            raise Unavailable("the evidence store is unavailable; retry") from exc
        raise
    except (BotoCoreError, S3UploadFailedError) as exc:
        raise Unavailable("the evidence store cannot be reached; retry") from exc


def _missing(exc: Any) -> bool:
    """Whether an S3 error says the object is not there."""
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")
