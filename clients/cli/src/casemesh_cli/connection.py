"""Where the client connects and as whom: the gateway's address, plaintext or
TLS (system roots with --tls, a private CA with --ca-file), and the bearer token
(--token, --token-file or one minted for --as/--role with the local secret;
else $CASEMESH_TOKEN or $CASEMESH_TOKEN_FILE; else one minted for alice). A
token is never echoed: errors name where it came from, not what it is."""

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
# The scheme before a token copied from an Authorization header.
_BEARER = re.compile(r"^bearer\s+", re.IGNORECASE)


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
        help="the user id to mint a local token for (default: alice); given, it wins over"
        " $CASEMESH_TOKEN and $CASEMESH_TOKEN_FILE, and is not taken with --token/--token-file",
    )
    p.add_argument(
        "--role",
        action="append",
        choices=["user", "agent", "admin"],
        help="a role of the minted token (repeatable; default: user); as --as, it wins over"
        " a token in the environment",
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


def secret(instead: str = "give --token or --token-file") -> tuple[str, str]:
    """The local secret tokens are minted with, and where it was found;
    none is bad input, saying what to do `instead`."""
    value = os.environ.get("CASEMESH_JWT_SECRET", "")
    if value:
        return value, "$CASEMESH_JWT_SECRET"
    for folder in [Path.cwd(), *Path.cwd().parents]:
        candidate = folder / ".run" / "jwt-secret"
        if candidate.exists():
            return candidate.read_text().strip(), str(candidate)
    raise BadInput(
        "no JWT secret to mint a token with: set CASEMESH_JWT_SECRET,"
        f" run `./dev up` first (.run/jwt-secret), or {instead}"
    )


def minted(
    args: argparse.Namespace, ttl_seconds: int = 3600, instead: str = "give --token or --token-file"
) -> str:
    """A token for --as/--role (alice, a user, when neither is given)."""
    key, where = secret(instead)
    actor, roles = args.actor or "alice", args.role or ["user"]
    args.token_source = f"minted for {actor} ({', '.join(roles)}) with the secret in {where}"
    return mint_token(key, actor, roles, ttl_seconds=ttl_seconds)


def token(args: argparse.Namespace) -> str:
    """The token to send, the command line winning over the environment:
    --token, else --token-file, else one minted for --as/--role if either
    is given, else $CASEMESH_TOKEN, else $CASEMESH_TOKEN_FILE, else one
    minted for alice. Where it came from is kept in `args.token_source`,
    for a refusal of it to name (a token in the environment, long
    forgotten, expires)."""
    asked = args.actor is not None or args.role is not None
    file: Path | None = args.token_file
    if asked and (args.token is not None or file is not None):
        raise BadInput(
            "--as/--role mint a token, --token/--token-file give one: give one or the other"
        )
    if args.token is not None:
        return _checked(args, args.token, "--token")
    if file is not None:
        return _checked(args, _read(file), f"the token file {file} (--token-file)")
    env = os.environ.get
    in_env = [f"${name}" for name in ("CASEMESH_TOKEN", "CASEMESH_TOKEN_FILE") if env(name)]
    if not in_env:
        return minted(args)
    if asked:
        return minted(args, instead=f"leave out --as and --role to send the token in {in_env[0]}")
    if env("CASEMESH_TOKEN"):
        return _checked(args, env("CASEMESH_TOKEN", ""), "$CASEMESH_TOKEN")
    named = Path(env("CASEMESH_TOKEN_FILE", ""))
    return _checked(args, _read(named), f"the token file {named} ($CASEMESH_TOKEN_FILE)")


def _read(file: Path) -> str:
    try:
        return file.read_text()
    except OSError as err:
        raise BadInput(f"cannot read the token file {file}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise BadInput(f"the token file {file} is not text") from None


def _checked(args: argparse.Namespace, value: str, source: str) -> str:
    """`value`, the token from `source`, as sent: one line of the characters a
    header may hold, without the "Bearer " a copy from a request often has
    (the client adds its own)."""
    value = _BEARER.sub("", value.strip())
    if not _TOKEN.fullmatch(value):
        raise BadInput(f"the token from {source} is empty or not one line of printable ASCII")
    args.token_source = source
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


# A gateway gone without a word (a link dropped, a NAT forgetting the
# connection: no FIN or RST comes) is noticed within 30 s while a call is
# open: a ping every 20 s, the connection given up, the call failing with
# UNAVAILABLE, when one goes unanswered for 10 s; not after an upload's,
# a download's or an export's --timeout, up to an hour later. As on the
# gateway's own channels (`casemesh.platform.backends`): pings also while
# only the server sends (a download), none with no call open, and a ping
# gRPC sends for flow control waited for 10 s, not 60, as a keepalive ping
# waits behind it. The gateway allows a ping every 10 s (PINGS_ALLOWED), so
# it never answers these with GOAWAY too_many_pings.
KEEPALIVE = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 0),
]


def channel(args: argparse.Namespace) -> grpc.Channel:
    creds = credentials(args)
    if creds is None:
        return grpc.insecure_channel(args.target, options=KEEPALIVE)
    return grpc.secure_channel(args.target, creds, options=KEEPALIVE)


def metadata(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token(args)}")]
