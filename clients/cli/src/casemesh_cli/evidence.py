"""The `casemesh` client's evidence commands: upload a file, and read one back
(its metadata, and its bytes to a file or stdout, checked against its sha256).

    casemesh --as alice upload /tmp/screenshot.png
    casemesh --as alice evidence evidence/… --out /tmp/copy.png
    casemesh --as alice uploads
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import evidence_pb2_grpc as epb_grpc
from casemesh_cli.output import check_out, emit, emit_pages, write_whole
from casemesh_cli.paging import PAGE_SIZE, pages
from casemesh_cli.parsing import BadInput, add_timeout_argument, command, resource

COMMANDS = ("upload", "evidence", "uploads")
TIMEOUT_HELP = (
    "give up after this long (default: 15 minutes; a large video on a slow link takes longer:"
    " give it more, and the gateway waits as long, up to 2 h 13 min, while the upload keeps"
    " to 64 KiB/s once 15 minutes are past)"
)


class Damaged(Exception):
    """Bytes that came other than they were stored (their sha256 differs): a
    transfer that failed and is worth retrying, not bad input."""


def add_commands(sub: Any) -> None:
    up = command(
        sub,
        "upload",
        "upload a file as evidence and print its name",
        "casemesh --as alice upload /tmp/screenshot.png",
    )
    up.add_argument("path", type=Path, help="an image, video or PDF (told apart by its bytes)")
    add_timeout_argument(up, 900.0, TIMEOUT_HELP)
    ev = command(
        sub,
        "evidence",
        "show evidence's metadata and download its bytes (the owner's or, for agents, any)",
        "casemesh --as alice evidence evidence/9b1e… --out /tmp/copy.png",
        "casemesh --as li --role agent evidence evidence/9b1e… > copy.png   # bytes on stdout",
    )
    ev.add_argument("evidence", help="evidence/{id}, or just the id")
    add_timeout_argument(ev, 900.0, TIMEOUT_HELP)
    ev.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write the bytes here (default: stdout, with the metadata on stderr)",
    )
    command(
        sub,
        "uploads",
        "list the files you uploaded, newest first",
        "casemesh --as alice uploads",
    )


def show(e: epb.Evidence, file: Any = None) -> None:
    print(f"{e.name}  {e.media_type}  {e.size_bytes} bytes", file=file)
    print(f"  sha256: {e.sha256}", file=file)
    if e.file_name:
        print(f"  file:   {e.file_name}   owner: {e.owner}", file=file)


def _upload(stub: Any, metadata: list[tuple[str, str]], path: Path, timeout: float) -> epb.Evidence:
    try:
        path.name.encode()
    except UnicodeEncodeError:
        raise BadInput(f"{str(path)!r}: its name is not UTF-8 text; rename the file") from None
    try:
        f = path.open("rb")
    except OSError as err:
        raise BadInput(f"cannot read {path}: {err.strerror}") from None
    unread: list[OSError] = []

    def messages() -> Iterator[epb.UploadEvidenceRequest]:
        yield epb.UploadEvidenceRequest(metadata=epb.EvidenceMetadata(file_name=path.name))
        try:
            while chunk := f.read(512 * 1024):
                yield epb.UploadEvidenceRequest(chunk=chunk)
        except OSError as err:
            unread.append(err)  # grpc cancels the upload: nothing is stored
            raise

    with f:
        try:
            result: epb.Evidence = stub.UploadEvidence(
                messages(), metadata=metadata, timeout=timeout
            )
        except grpc.RpcError:
            if unread:
                raise BadInput(f"cannot read {path}: {unread[0].strerror}") from None
            raise
    return result


def _download(
    chunks: Iterator[epb.ReadEvidenceResponse], evidence: epb.Evidence, out: Any, spoilt: str
) -> None:
    """Writes the bytes to `out`; if they do not match the evidence's sha256,
    raises Damaged saying `spoilt` (what became of what was written)."""
    digest = hashlib.sha256()
    for piece in chunks:
        digest.update(piece.chunk)
        out.write(piece.chunk)
    if digest.hexdigest() != evidence.sha256:
        raise Damaged(
            f"{evidence.name}: the bytes read do not match its sha256, so {spoilt}; try again"
        )


def _read(stub: Any, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    name = resource("evidence", args.evidence)
    if args.out is not None:
        check_out(args.out)
    evidence: epb.Evidence = stub.GetEvidence(
        epb.GetEvidenceRequest(name=name), metadata=metadata, timeout=10
    )
    chunks = stub.ReadEvidence(
        epb.ReadEvidenceRequest(name=name), metadata=metadata, timeout=args.timeout
    )
    if args.out is None:
        # The bytes own stdout; the metadata goes to stderr so a redirect stays the file.
        emit(args, evidence, lambda e: show(e, file=sys.stderr), file=sys.stderr)
        spoilt = "what was written to stdout is unusable: discard it"
        _download(chunks, evidence, sys.stdout.buffer, spoilt)
        sys.stdout.buffer.flush()
        return
    # A damaged download leaves no file (write_whole removes what it began).
    spoilt = f"nothing was written to {args.out}"
    write_whole(args.out, lambda out: _download(chunks, evidence, out, spoilt))
    emit(args, evidence, show)


def run(channel: grpc.Channel, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    stub = epb_grpc.EvidenceServiceStub(channel)
    if args.command == "upload":
        emit(args, _upload(stub, metadata, args.path, args.timeout), show)
    elif args.command == "uploads":
        listed = pages(
            lambda token: stub.ListEvidence(
                epb.ListEvidenceRequest(page_size=PAGE_SIZE, page_token=token),
                metadata=metadata,
                timeout=10,
            )
        )
        emit_pages(args, listed, "evidence", show)
    else:
        _read(stub, metadata, args)
