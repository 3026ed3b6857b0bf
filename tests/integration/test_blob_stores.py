"""Both evidence stores keep bytes by content: a local directory, and an
S3-compatible bucket (here a real S3 API server on loopback)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from casemesh.platform.errors import Unavailable
from casemesh_devstack.ports import free_port
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
    ):
        with pytest.raises(Unavailable):
            call()
