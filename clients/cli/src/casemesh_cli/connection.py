"""Where the client connects and as whom: the gateway's address, plaintext or
TLS (system roots with --tls, a private CA with --ca-file), and the bearer token
(--token or $CASEMESH_TOKEN, --token-file or $CASEMESH_TOKEN_FILE, else one
minted for --as/--role with the local secret). A token is never echoed: errors
name where it came from, not what it is."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import grpc

from casemesh.platform.identity import mint_token
from casemesh_cli.parsing import BadInput

# What an HTTP header value may hold: a JWT is far narrower, but anything else
# would be refused by gRPC with the value in its message.
_TOKEN = re.compile(r"[\x21-\x7e]+")


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument(
        "--target",
        default=env("CASEMESH_GATEWAY", "127.0.0.1:50051"),
        help="the gateway's host:port (default: $CASEMESH_GATEWAY or 127.0.0.1:50051)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="connect with TLS, trusting the system's root certificates (default: plaintext)",
    )
    p.add_argument(
        "--ca-file",
        type=Path,
        default=env("CASEMESH_CA_FILE") or None,
        metavar="PATH",
        help="connect with TLS, trusting the CA certificate(s) in this PEM file "
        "(default: $CASEMESH_CA_FILE)",
    )
    add_token_arguments(p)
    p.add_argument(
        "--as",
        dest="actor",
        default="alice",
        help="with no token given: the user id to mint a local token for (default: alice)",
    )
    p.add_argument(
        "--role",
        action="append",
        choices=["user", "agent", "admin"],
        help="with no token given: a role of the minted token (repeatable; default: user)",
    )


def add_token_arguments(p: argparse.ArgumentParser, after_command: bool = False) -> None:
    """--token and --token-file; also after the command (`casemesh show ID
    --token-file …`), where, unset, they leave the ones before it be. Put
    there, they used to be refused as unrecognized, quoting the token."""
    unset = argparse.SUPPRESS if after_command else None
    p.add_argument(
        "--token",
        default=unset,
        help="bearer token to send (default: $CASEMESH_TOKEN); other users may see it in "
        "the process list, so prefer --token-file",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=unset,
        metavar="PATH",
        help="read the bearer token from this file (default: $CASEMESH_TOKEN_FILE)",
    )


def secret() -> str:
    value = os.environ.get("CASEMESH_JWT_SECRET", "")
    if value:
        return value
    for folder in [Path.cwd(), *Path.cwd().parents]:
        candidate = folder / ".run" / "jwt-secret"
        if candidate.exists():
            return candidate.read_text().strip()
    raise BadInput(
        "no token and no JWT secret to mint one: give --token or --token-file, "
        "set CASEMESH_JWT_SECRET, or run `./dev up` first (.run/jwt-secret)"
    )


def minted(args: argparse.Namespace, ttl_seconds: int = 3600) -> str:
    return mint_token(secret(), args.actor, args.role or ["user"], ttl_seconds=ttl_seconds)


def token(args: argparse.Namespace) -> str:
    """The token to send: --token, else --token-file (the command line wins
    over the environment), else $CASEMESH_TOKEN, else $CASEMESH_TOKEN_FILE,
    else one minted for --as."""
    value: str
    env = os.environ.get
    file: Path | None = args.token_file
    if args.token is not None:
        value, source = args.token.strip(), "--token"
    elif file is None and env("CASEMESH_TOKEN"):
        value, source = env("CASEMESH_TOKEN", "").strip(), "$CASEMESH_TOKEN"
    else:
        named = env("CASEMESH_TOKEN_FILE")
        file = file or (Path(named) if named else None)
        if file is None:
            return minted(args)
        try:
            value = file.read_text().strip()
        except OSError as err:
            raise BadInput(f"cannot read the token file {file}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise BadInput(f"the token file {file} is not text") from None
        source = f"the token file {file}"
    if not _TOKEN.fullmatch(value):
        raise BadInput(f"the token from {source} is empty or not one line of printable ASCII")
    return value


def credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials when asked for (None: plaintext, for a local gateway)."""
    if args.ca_file:
        try:
            roots = args.ca_file.read_bytes()
        except OSError as err:
            raise BadInput(f"cannot read the CA file {args.ca_file}: {err.strerror}") from None
        if b"-----BEGIN CERTIFICATE-----" not in roots:
            raise BadInput(f"the CA file {args.ca_file} holds no PEM certificate")
        return grpc.ssl_channel_credentials(root_certificates=roots)
    if args.tls:
        return grpc.ssl_channel_credentials()
    return None


def channel(args: argparse.Namespace) -> grpc.Channel:
    creds = credentials(args)
    if creds is None:
        return grpc.insecure_channel(args.target)
    return grpc.secure_channel(args.target, creds)


def metadata(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token(args)}")]
