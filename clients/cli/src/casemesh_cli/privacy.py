"""The `casemesh` client's privacy commands: a copy of a person's data, and
(for admins) erasing a person.

    casemesh --as alice export --out alice.zip
    casemesh --as root --role admin export --person alice --out alice.zip
    casemesh --as root --role admin erase alice --reason "PD-2026-0042"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

import grpc

from casemesh.v1 import privacy_pb2 as ppb
from casemesh.v1 import privacy_pb2_grpc as ppb_grpc
from casemesh_cli.output import check_out, emit, write_whole
from casemesh_cli.parsing import (
    add_request_id_argument,
    add_timeout_argument,
    command,
    request_id,
)

COMMANDS = ("export", "erase")
# Named in an archive beside its contents when a file could not be read.
MISSING = "missing-files.txt"


def add_commands(sub: Any) -> None:
    ex = command(
        sub,
        "export",
        "download a copy of a person's data: a zip of their cases (JSON) and their files",
        "casemesh --as alice export --out alice.zip",
        "casemesh --as root --role admin export --person alice --out alice.zip",
    )
    ex.add_argument("--person", default="", help="whose (admins only; default: yourself)")
    ex.add_argument("--out", type=Path, required=True, metavar="FILE", help="write the zip here")
    add_timeout_argument(
        ex, 3600.0, "give up after this long (default: an hour; many large videos take longer)"
    )
    er = command(
        sub,
        "erase",
        "erase a person's personal data (admins only; cannot be undone)",
        'casemesh --as root --role admin erase alice --reason "PD-2026-0042"',
    )
    er.add_argument("person", help="the person's user id")
    er.add_argument("--reason", required=True, help="the privacy desk's reference")
    add_request_id_argument(er)


def show_erasure(e: ppb.Erasure) -> None:
    when = e.erase_time.ToDatetime().isoformat(timespec="seconds")
    keys = "1 data key" if e.erased_keys == 1 else f"{e.erased_keys} data keys"
    print(f"erased {e.person}  {keys}  at {when}Z  by {e.erased_by}")


def _export(stub: Any, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    check_out(args.out)
    pieces = stub.ExportPerson(
        ppb.ExportPersonRequest(person=args.person), metadata=metadata, timeout=args.timeout
    )
    got = ppb.ExportPersonResponse()  # the file name, and the files left out

    def fill(out: BinaryIO) -> int:
        size = 0
        for piece in pieces:
            out.write(piece.data)
            size += len(piece.data)
            got.file_name = got.file_name or piece.file_name
            got.missing_files.extend(piece.missing_files)
        return size

    size = write_whole(args.out, fill)
    if getattr(args, "json", False):
        print(
            json.dumps(
                {
                    "path": str(args.out),
                    "bytes": size,
                    "fileName": got.file_name,
                    "missingFiles": list(got.missing_files),
                },
                ensure_ascii=False,
            )
        )
    else:
        print(f"{args.out}  {size} bytes")
    if got.missing_files:
        print(
            f"{len(got.missing_files)} files could no longer be found:"
            f" see {MISSING} in the archive",
            file=sys.stderr,
        )


def run(channel: grpc.Channel, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    stub = ppb_grpc.PrivacyServiceStub(channel)
    if args.command == "export":
        _export(stub, metadata, args)
        return
    request = ppb.ErasePersonRequest(
        person=args.person, reason=args.reason, request_id=request_id(args)
    )
    emit(args, stub.ErasePerson(request, metadata=metadata, timeout=30), show_erasure)
