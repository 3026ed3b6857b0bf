"""Both evidence stores keep bytes by content: a local directory, and an
S3-compatible bucket (here a real S3 API server on loopback)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from casemesh.platform.errors import Unavailable
from casemesh_devstack.ports import free_port
from casemesh_evidence.application import SPOOL_STALE, EvidenceLocker
from casemesh_evidence.store import BlobStore, LocalBlobStore, S3BlobStore


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket="casemesh-evidence")
    yield endpoint
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    return S3BlobStore(
        bucket="casemesh-evidence",
        endpoint_url=request.getfixturevalue("s3_endpoint"),
        access_key_id="test",
        secret_access_key="test",
    )


def test_bytes_are_kept_by_their_hash_and_read_back_whole(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(700 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    source = tmp_path / "upload"
    source.write_bytes(data)
    assert not store.exists(sha)
    store.put(sha, source)
    store.put(sha, source)  # the same content again changes nothing
    assert store.exists(sha)
    assert b"".join(store.read(sha)) == data


def damage(store: BlobStore, sha: str, data: bytes) -> None:
    """Leaves a copy of `data` cut short under its hash, as a disk filling up
    or a copy killed half-way outside the store's own writes would."""
    if isinstance(store, LocalBlobStore):
        (store.root / sha[:2] / sha[2:4] / sha).write_bytes(data[: len(data) // 2])
    else:
        assert isinstance(store, S3BlobStore)
        store._s3.put_object(Bucket=store.bucket, Key=f"evidence/{sha}", Body=data[:1000])


def test_the_same_bytes_stored_again_replace_a_damaged_copy(
    store: BlobStore, tmp_path: Path
) -> None:
    """A copy cut short was kept for good: storing the same bytes again (an
    upload of them) found it there and changed nothing. Now a copy not of
    their size is replaced, and reads back whole."""
    data = os.urandom(300 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    source = tmp_path / "upload"
    source.write_bytes(data)
    store.put(sha, source)
    damage(store, sha, data)
    assert b"".join(store.read(sha)) != data
    store.put(sha, source)
    assert b"".join(store.read(sha)) == data


def test_a_local_copy_is_durable_before_put_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload is recorded (and the caller told) once `put` returns: the
    rename into place, and the folders made for it, are flushed too, or a
    power cut could keep the record and lose the file."""
    flushed: list[int] = []
    fsync = os.fsync

    def recording(fd: int) -> None:
        flushed.append(os.fstat(fd).st_ino)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"\x89PNG" + os.urandom(1024)
    sha = hashlib.sha256(data).hexdigest()
    source = tmp_path / "upload"
    source.write_bytes(data)
    store.put(sha, source)
    folder = store.root / sha[:2] / sha[2:4]
    file_and_folders = [p.stat().st_ino for p in (folder / sha, folder, folder.parent, store.root)]
    assert set(file_and_folders) <= set(flushed)


def test_an_object_store_out_of_reach_is_unavailable_not_a_failure(tmp_path: Path) -> None:
    """A caller told UNAVAILABLE retries; one told UNKNOWN does not."""
    away = S3BlobStore(
        bucket="casemesh-evidence",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="test",
        secret_access_key="test",
    )
    source = tmp_path / "upload"
    source.write_bytes(b"x")
    for call in (
        lambda: away.exists("a" * 64),
        lambda: away.put("a" * 64, source),
        lambda: b"".join(away.read("a" * 64)),
        lambda: away.delete("a" * 64),
        lambda: away.sweep(time.time()),
    ):
        with pytest.raises(Unavailable):
            call()


def test_the_parts_a_put_killed_part_way_left_in_the_bucket_are_aborted(s3_endpoint: str) -> None:
    """A process killed while it `put` a large file leaves an unfinished
    multi-part upload whose parts are the file's bytes: kept in the bucket
    (and billed), out of reach of any deletion of the file, an erasure's
    too. The sweep aborts those under the store's prefix begun before its
    time; one begun since (another replica's, under way) and another
    application's keys stay."""
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    bucket = "casemesh-evidence"
    store = S3BlobStore(
        bucket=bucket, endpoint_url=s3_endpoint, access_key_id="test", secret_access_key="test"
    )
    data = os.urandom(64 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    ours, theirs = f"evidence/{sha}", "backups/evidence-notes"

    def begin(key: str) -> str:
        upload_id: str = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=data)
        return upload_id

    def unfinished() -> set[str]:
        return {u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}

    left, other = begin(ours), begin(theirs)
    try:
        # Begun after `before`: perhaps under way. (This S3 server says every
        # upload began in 2010, so a `before` earlier than that.)
        assert store.sweep(0) == 0
        assert unfinished() == {ours, theirs}
        assert store.sweep(time.time() + 1) == 1
        assert unfinished() == {theirs}
        with pytest.raises(ClientError, match="NoSuchUpload"):
            s3.list_parts(Bucket=bucket, Key=ours, UploadId=left)
        assert not store.exists(sha)
        assert store.sweep(time.time() + 1) == 0
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key=theirs, UploadId=other)


def test_a_bucket_out_of_reach_stops_neither_the_spool_clean_up_nor_a_start(
    tmp_path: Path,
) -> None:
    """The clean-up runs at start (and every 10 minutes): a bucket that
    cannot be reached leaves its unfinished uploads for the next round, and
    the spool files a killed upload left still go."""
    away = S3BlobStore(
        bucket="casemesh-evidence",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="test",
        secret_access_key="test",
    )
    locker = EvidenceLocker(pool=cast(Any, None), store=away, limits={}, incoming=tmp_path)
    left = tmp_path / "upload-left"
    left.write_bytes(b"x")
    an_hour_ago = time.time() - SPOOL_STALE.total_seconds() - 1
    os.utime(left, (an_hour_ago, an_hour_ago))
    assert locker.remove_stale_spools() == 1
    assert not left.exists()
