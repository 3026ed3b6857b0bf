"""The command-line client without a stack: what it says before it calls anyone
(help, usage, bad input), where its token comes from, and how it connects:
plaintext, or TLS to a local server with a self-signed certificate (the gateway
itself serves plaintext; TLS is for a proxy in front of it)."""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import socket
import stat
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from casemesh.platform.backends import PINGS_ALLOWED
from casemesh.platform.errors import InvalidArgument
from casemesh.platform.identity import TokenVerifier
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import casequeue_pb2 as qpb
from casemesh.v1 import evidence_pb2
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import tickets_pb2 as pb
from casemesh_casequeue.api import _lease
from casemesh_cli import connection, paging
from casemesh_cli.__main__ import REFUSED, UNREACHABLE, build_parser, main, report_failure
from casemesh_cli.output import write_whole
from casemesh_cli.parsing import BadInput
from tests.support import self_signed

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
# Shaped like a bearer token (header, claims, signature), but signs nothing.
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWhlcmU"

# A fake service's methods: name: (behaviour, request type, response type);
# a behaviour that yields answers with a stream.
Methods = dict[str, tuple[Callable[..., Any], Any, Any]]


@contextmanager
def serving(service: str, methods: Methods) -> Iterator[str]:
    """A local server answering `casemesh.v1.{service}`'s `methods` as the
    gateway would; yields its --target."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handlers = {
        name: (
            grpc.unary_stream_rpc_method_handler
            if inspect.isgeneratorfunction(behaviour)
            else grpc.unary_unary_rpc_method_handler
        )(
            behaviour,
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (behaviour, request, response) in methods.items()
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(f"casemesh.v1.{service}", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_command_and_argument_says_what_it_is_with_an_example() -> None:
    commands = subcommands()
    assert {"decide-appeal", "decide-case", "evidence", "upload", "open"} <= set(commands)
    for name, parser in [("casemesh", build_parser()), *commands.items()]:
        assert parser.epilog and "casemesh " in parser.epilog, name
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{name} {action.dest}"


def bad_input(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """What `casemesh ARGV` says on stderr, having exited 2 with no traceback."""
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_no_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert "usage: casemesh" in bad_input(capsys)


def test_a_command_help_shows_its_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["decide-appeal", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--outcome {uphold,reject}" in out and "example:" in out


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args([*argv, "list"])


def test_a_token_file_is_read_and_its_newline_dropped(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text("eyJ.abc.def\n")
    assert connection.token(args("--token-file", str(file))) == "eyJ.abc.def"
    # --token wins over the file.
    assert connection.token(args("--token-file", str(file), "--token", "t2")) == "t2"


def test_a_token_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "token"
    file.write_text("from-env\n")
    monkeypatch.setenv("CASEMESH_TOKEN_FILE", str(file))
    monkeypatch.delenv("CASEMESH_TOKEN", raising=False)
    assert connection.token(args()) == "from-env"


def test_a_token_file_given_wins_over_a_token_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CASEMESH_TOKEN=<alice's> casemesh --token-file bob.token …` acts as
    Bob: the command line wins over the environment."""
    file = tmp_path / "bob.token"
    file.write_text("from-file\n")
    monkeypatch.setenv("CASEMESH_TOKEN", "from-env")
    assert connection.token(args("--token-file", str(file))) == "from-file"
    assert connection.token(args()) == "from-env"
    assert connection.token(args("--token", "t2")) == "t2"


SECRET = "local-secret-" * 4


def _minted_for(token: str) -> tuple[str, list[str]]:
    """Whom a token the client minted with SECRET names, and their roles."""
    who = TokenVerifier(secret=SECRET).verify(f"Bearer {token}")
    return who.subject, sorted(who.roles)


def test_as_and_role_given_win_over_a_token_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CASEMESH_TOKEN=<root's> casemesh --as li --role agent …` acts as
    li the agent, not silently as root: the command line wins."""
    monkeypatch.setenv("CASEMESH_JWT_SECRET", SECRET)
    file = tmp_path / "root.token"
    file.write_text("from-file\n")
    for name, value in (("CASEMESH_TOKEN", "from-env"), ("CASEMESH_TOKEN_FILE", str(file))):
        with monkeypatch.context() as env:
            env.delenv("CASEMESH_TOKEN", raising=False)
            env.setenv(name, value)
            assert _minted_for(connection.token(args("--as", "li", "--role", "agent"))) == (
                "li",
                ["agent"],
            )
            assert _minted_for(connection.token(args("--role", "admin"))) == ("alice", ["admin"])
            assert connection.token(args()) in ("from-env", "from-file")  # neither given
    # Both on the command line: which one was meant is not guessed.
    with pytest.raises(BadInput, match=r"--as/--role .* give one or the other"):
        connection.token(args("--token", "t", "--as", "li"))
    with pytest.raises(BadInput, match="give one or the other"):
        connection.token(args("--role", "agent", "--token-file", str(file)))
    # With no secret to mint with, what to do to send the environment's token instead.
    monkeypatch.delenv("CASEMESH_JWT_SECRET")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CASEMESH_TOKEN", "from-env")
    with pytest.raises(BadInput, match=r"leave out --as and --role .* \$CASEMESH_TOKEN"):
        connection.token(args("--as", "li"))


def _token_expired(request: pb.ListTicketsRequest, context: Any) -> Any:
    """The gateway refusing a token past its `exp`."""
    return context.abort(grpc.StatusCode.UNAUTHENTICATED, "token expired")


def test_a_refused_token_is_named_by_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token long forgotten in the environment expires: the refusal says
    which token it was, never what it is."""
    monkeypatch.setenv("CASEMESH_JWT_SECRET", SECRET)
    monkeypatch.setenv("CASEMESH_TOKEN", JWT)
    file = tmp_path / "token"
    file.write_text(JWT)
    methods: Methods = {
        "ListTickets": (_token_expired, pb.ListTicketsRequest, pb.ListTicketsResponse)
    }
    said = []
    with serving("TicketService", methods) as target:
        for given in ([], ["--token-file", str(file)], ["--as", "li", "--role", "agent"]):
            with pytest.raises(SystemExit) as refused:
                main(["--target", target, *given, "list"])
            assert refused.value.code == REFUSED
            said.append(capsys.readouterr().err)
    from_env, from_file, minted = said
    assert "UNAUTHENTICATED: token expired\n  the token sent: $CASEMESH_TOKEN\n" in from_env
    assert f"the token sent: the token file {file} (--token-file)" in from_file
    assert "the token sent: minted for li (agent) with the secret in $CASEMESH_JWT_SECRET" in minted
    assert all(JWT not in err and SECRET not in err for err in said)


def test_an_option_is_never_taken_for_a_shortened_other_one() -> None:
    """`assign … --to bob` is the assign command's --to, not --token cut short."""
    parsed = build_parser().parse_args(["--token", "t", "assign", "tickets/x", "--to", "bob"])
    assert (parsed.token, parsed.to) == ("t", "bob")
    with pytest.raises(SystemExit):  # nor a command's own, cut short
        build_parser().parse_args(["--token", "t", "upload", "x.png", "--time", "60"])


def test_text_that_is_not_utf8_is_named_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = "bad\udcff"  # a byte the terminal could not decode, as Python passes it on
    err = bad_input(
        capsys, "--token", "t", "open", "--category", "account.login", "--subject", bad,
        "--description", "d",
    )  # fmt: skip
    assert "subject: not UTF-8 text" in err


def test_filing_without_an_email_or_a_phone_is_bad_input_naming_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Refused before any call (nothing listens at the target), naming the
    flags, not the service's `ticket.contact.channels`, which has none; and
    each command's help says one of them is needed."""
    nowhere = ["--token", "t", "--target", "127.0.0.1:9"]
    for argv in (
        ["open", "--category", "account.login", "--subject", "s", "--description", "d"],
        ["report", "--id", "7731", "--reason", "harassment/bullying", "--explanation", "x",
         "--evidence", "evidence/9b1e", "--good-faith"],
    ):  # fmt: skip
        err = bad_input(capsys, *nowhere, *argv)
        assert f"{argv[0]}: give --email or --phone (or both)" in err
        assert "channels" not in err
        helps = {a.dest: a.help or "" for a in subcommands()[argv[0]]._actions}
        assert "--phone or both is required" in helps["email"]
        assert "--email or both is required" in helps["phone"]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_timeout_is_a_positive_number_of_seconds(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """Refused naming the flag, not sent as a call that fails at once and
    blames the gateway."""
    for argv in (
        ["export", "--out", "x.zip", "--timeout", value],
        ["upload", "x.png", "--timeout", value],
        ["evidence", "evidence/e1", "--timeout", value],
    ):
        assert "--timeout" in bad_input(capsys, "--token", "t", *argv)
    parsed = build_parser().parse_args(["--token", "t", "upload", "big.mp4", "--timeout", "3600"])
    assert parsed.timeout == 3600.0


@pytest.mark.parametrize("value", ["5", "9", "3601", "-1", "3000000000"])
def test_a_lease_the_queue_would_refuse_is_bad_input_naming_its_bounds(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """Refused before the queue is asked (exit 2, not 1), and never a traceback
    for a number too big for the wire."""
    for argv in (["next", "--lease", value], ["renew", "tickets/x", "--lease", value]):
        err = bad_input(capsys, "--token", "t", *argv)
        assert "--lease: must be from 10 to 3600 seconds (0 means 600)" in err


def test_the_client_takes_exactly_the_leases_the_queue_takes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def queue_takes(seconds: int) -> bool:
        try:
            _lease(seconds)
        except InvalidArgument:
            return False
        return True

    def client_takes(seconds: int) -> bool:
        try:
            parsed = build_parser().parse_args(["next", "--lease", str(seconds)])
        except SystemExit:
            return False
        assert parsed.lease == seconds
        return True

    for seconds in (-1, 0, 1, 9, 10, 600, 3600, 3601, 2**31 - 1):
        assert client_takes(seconds) == queue_takes(seconds), seconds
    capsys.readouterr()


class _HoldsOneCase:
    """Renews the claim on tickets/x, held by li; any other case is not the caller's."""

    def __init__(self) -> None:
        self.renewed: list[tuple[str, int]] = []

    def RenewClaim(self, request: qpb.RenewClaimRequest, context: Any) -> qpb.QueueCase:
        self.renewed.append((request.name, request.lease_seconds))
        if request.name != "tickets/x":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"you do not hold {request.name}")
        case = qpb.QueueCase(name=request.name, queue="account", holder="li")
        # Renewed at 03:00 UTC: held for the lease asked for from then.
        now = datetime(2030, 1, 2, 3, 0, tzinfo=UTC)
        case.lease_expire_time.FromDatetime(now + timedelta(seconds=request.lease_seconds))
        return case


def test_renew_keeps_a_held_case_under_a_new_lease_and_shows_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = _HoldsOneCase()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    renew = grpc.unary_unary_rpc_method_handler(
        service.RenewClaim,
        request_deserializer=qpb.RenewClaimRequest.FromString,
        response_serializer=qpb.QueueCase.SerializeToString,
    )
    queue = grpc.method_handlers_generic_handler(
        "casemesh.v1.CaseQueueService", {"RenewClaim": renew}
    )
    server.add_generic_rpc_handlers((queue,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    agent = ["--token", "t", "--target", f"127.0.0.1:{port}"]
    try:
        main([*agent, "renew", "tickets/x", "--lease", "1200"])
        shown = capsys.readouterr().out
        main([*agent, "renew", "tickets/x"])
        with pytest.raises(SystemExit) as refused:
            main([*agent, "renew", "tickets/y"])
    finally:
        server.stop(None)
    assert shown.startswith("tickets/x ") and "account" in shown
    assert "held by li until 2030-01-02 03:20 UTC" in shown  # until when the agent holds it
    assert service.renewed == [("tickets/x", 1200), ("tickets/x", 600), ("tickets/y", 600)]
    assert refused.value.code == 1  # refused by the server, as `release` is
    assert "FAILED_PRECONDITION: you do not hold tickets/y" in capsys.readouterr().err


def test_a_bad_token_is_refused_without_being_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "token"
    file.write_text("secret-part one\nsecret-part two\n")
    err = bad_input(capsys, "--token-file", str(file), "list")
    assert str(file) in err and "secret-part" not in err
    missing = bad_input(capsys, "--token-file", str(tmp_path / "missing"), "list")
    assert "cannot read the token file" in missing


@pytest.mark.parametrize(
    "argv",
    [
        ["--tokn", JWT, "list"],  # misspelt: the token is taken for the command
        ["show", "tickets/x", f"--tokn={JWT}"],
        ["--token", "t", "--role", JWT, "list"],  # given to the wrong option
        ["list", "--", "--token", "opaque-secret"],  # after `--`: not an option at all
    ],
)
def test_a_usage_error_never_shows_the_token(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """What is said is often pasted into a chat or a ticket: the mistake is
    named, the token is not."""
    err = bad_input(capsys, *argv)
    assert "casemesh" in err and "error:" in err and "<hidden>" in err
    assert JWT not in err and "opaque-secret" not in err


def test_the_token_goes_before_or_after_the_command(tmp_path: Path) -> None:
    """`casemesh show ID --token=…` is taken, as `--json` is, not refused
    quoting the token."""
    file = tmp_path / "token"
    file.write_text("from-file\n")
    parser = build_parser()
    assert connection.token(parser.parse_args(["show", "tickets/x", f"--token={JWT}"])) == JWT
    assert connection.token(parser.parse_args(["list", "--token-file", str(file)])) == "from-file"
    # Not given after the command, the one before it stands.
    assert connection.token(parser.parse_args(["--token", "before", "list", "--json"])) == "before"


def test_plaintext_by_default_tls_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[dict[str, Any]] = []
    real = grpc.ssl_channel_credentials

    def recording(**kwargs: Any) -> grpc.ChannelCredentials:
        made.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(grpc, "ssl_channel_credentials", recording)
    assert connection.credentials(args()) is None
    assert isinstance(connection.credentials(args("--tls")), grpc.ChannelCredentials)
    assert made == [{}]  # the system's roots
    ca = tmp_path / "ca.pem"
    ca.write_bytes(PEM)
    assert isinstance(connection.credentials(args("--ca-file", str(ca))), grpc.ChannelCredentials)
    assert made[1] == {"root_certificates": PEM}


def test_a_gateway_gone_without_a_word_is_noticed_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plaintext or TLS, the channel pings the gateway while a call is open
    (an upload, a download, an export), also while only the server sends,
    and gives the connection up when a ping goes unanswered; never more
    often than the gateway allows (it would answer GOAWAY too_many_pings)."""
    opened: list[dict[str, Any]] = []
    for kind in ("insecure_channel", "secure_channel"):
        real = getattr(grpc, kind)

        def recording(*given: Any, real: Any = real, **kwargs: Any) -> grpc.Channel:
            opened.append(dict(kwargs.get("options") or []))
            return real(*given, **kwargs)

        monkeypatch.setattr(grpc, kind, recording)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(PEM)
    for argv in ([], ["--tls"], ["--ca-file", str(ca)]):
        connection.channel(args(*argv)).close()
    assert len(opened) == 3
    for options in opened:
        assert options["grpc.keepalive_time_ms"] == 20_000
        assert options["grpc.keepalive_timeout_ms"] == 10_000
        assert options["grpc.http2.max_pings_without_data"] == 0
        assert options["grpc.keepalive_permit_without_calls"] == 0
        name, allowed = PINGS_ALLOWED
        assert options["grpc.keepalive_time_ms"] >= allowed, name


def test_a_ca_file_that_is_no_certificate_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    assert "holds no PEM certificate" in bad_input(
        capsys, "--token", "t", "--ca-file", str(ca), "list"
    )


def test_a_statement_that_is_not_the_protos_json_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    statement = tmp_path / "statement.json"
    statement.write_text('{"decisionGround": "NOT_A_GROUND"}')
    err = bad_input(
        capsys, "--token", "t", "decide-case", "report-cases/x", "--outcome", "no_violation",
        "--statement", str(statement),
    )  # fmt: skip
    assert "not a DecisionStatement" in err and "NOT_A_GROUND" in err


def test_json_goes_before_or_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--json", "list"]).json
    assert parser.parse_args(["list", "--json"]).json
    assert not parser.parse_args(["list"]).json


def test_a_ca_file_reaches_a_server_behind_tls_that_plaintext_cannot(tmp_path: Path) -> None:
    cert, key = self_signed()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    try:
        ca = tmp_path / "ca.pem"
        ca.write_bytes(cert)

        def check(*argv: str) -> grpc.StatusCode:
            with connection.channel(args("--target", f"127.0.0.1:{port}", *argv)) as channel:
                try:
                    health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=5
                    )
                except grpc.RpcError as err:
                    return err.code()
                return grpc.StatusCode.OK

        assert check("--ca-file", str(ca)) == grpc.StatusCode.OK
        assert check() == grpc.StatusCode.UNAVAILABLE  # plaintext to a TLS port
        assert check("--tls") == grpc.StatusCode.UNAVAILABLE  # not a CA the system trusts
    finally:
        server.stop(None)


def test_a_tls_mismatch_says_to_check_tls_not_whether_the_gateway_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TLS to a plaintext gateway, or to one whose certificate no trusted CA
    signed: bad usage to fix (exit 2), not an outage worth retrying (3).
    Plaintext to a TLS port only sees the connection closed: still 3, with
    the hint."""
    cert, key = self_signed()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    tls_port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    plain_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    said = {}
    try:
        for name, port, argv in (
            ("tls to plaintext", plain_port, ["--ca-file", str(ca)]),
            ("untrusted certificate", tls_port, ["--tls"]),
            ("plaintext to tls", tls_port, []),
        ):
            target = ["--token", "t", "--target", f"127.0.0.1:{port}"]
            with pytest.raises(SystemExit) as failed:
                main([*target, *argv, "comment", "tickets/x", "你好"])
            said[name] = (failed.value.code, capsys.readouterr().err)
    finally:
        server.stop(None)
    code, err = said["tls to plaintext"]
    assert code == 2 and "the TLS handshake with 127.0.0.1:" in err
    assert "does not answer in TLS; without --tls and --ca-file" in err
    code, err = said["untrusted certificate"]
    assert code == 2 and "signed by no CA the client trusts; give that CA with --ca-file" in err
    code, err = said["plaintext to tls"]
    assert code == UNREACHABLE and "if it serves TLS, give --tls or --ca-file" in err
    for name in ("tls to plaintext", "untrusted certificate"):
        assert "is it running" not in said[name][1]
    assert all("may have been made" not in err for _, err in said.values())  # it never left


def test_a_token_copied_with_its_bearer_scheme_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token copied from an Authorization header ("Bearer eyJ…") is sent
    as the token it holds, not refused as not one line of printable ASCII."""
    file = tmp_path / "token"
    file.write_text(f"Bearer {JWT}\n")
    assert connection.token(args("--token-file", str(file))) == JWT
    assert connection.token(args("--token", f"bearer  {JWT}")) == JWT
    monkeypatch.setenv("CASEMESH_TOKEN", f"Bearer {JWT}")
    assert connection.token(args()) == JWT
    assert connection.metadata(args()) == [("authorization", f"Bearer {JWT}")]


def test_ctrl_c_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: argparse.Namespace) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("casemesh_cli.__main__.run", interrupted)
    with pytest.raises(SystemExit) as exit_:
        main(["--token", "t", "list"])
    assert exit_.value.code == 130
    assert capsys.readouterr().err == ""
    # A change interrupted may have been made: how to retry it, once.
    with pytest.raises(SystemExit) as exit_:
        main(["--token", "t", "solve", "tickets/x", "fixed", "--request-id", "r-42"])
    assert exit_.value.code == 130
    assert "--request-id r-42" in capsys.readouterr().err


class _Refused(grpc.RpcError):  # type: ignore[misc]
    """A refusal as grpcio raises it: a code, a message and the status trailers."""

    def __init__(self, status: Any) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return next(c for c in grpc.StatusCode if c.value[0] == self._status.code)

    def details(self) -> str:
        return str(self._status.message)

    def trailing_metadata(self) -> Any:
        return (("grpc-status-details-bin", self._status.SerializeToString()),)


def test_a_rate_limit_says_when_to_try_again(capsys: pytest.CaptureFixture[str]) -> None:
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="too many requests")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="RATE_LIMITED"))
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromMilliseconds(750)
    status.details.add().Pack(retry)
    assert report_failure(_Refused(status), "127.0.0.1:50051") == REFUSED
    err = capsys.readouterr().err
    assert "reason: RATE_LIMITED" in err and "try again in 0.75 s" in err


def test_a_deadline_the_gateway_keeps_is_its_refusal_not_silence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An upload the gateway ended for pausing is refused, with its words
    (exit 1), not a gateway that did not answer (exit 3, worth retrying)."""
    said = "the upload paused for more than 76 s"
    status = status_pb2.Status(code=code_pb2.DEADLINE_EXCEEDED, message=said)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="UPLOAD_PAUSED"))
    assert report_failure(_Refused(status), "127.0.0.1:50051", "r-1") == REFUSED
    err = capsys.readouterr().err
    assert f"DEADLINE_EXCEEDED: {said}" in err and "reason: UPLOAD_PAUSED" in err
    assert "no answer" not in err and "--request-id" not in err
    # With no reason of the gateway's, no answer came in time.
    silent = status_pb2.Status(code=code_pb2.DEADLINE_EXCEEDED, message="Deadline Exceeded")
    assert report_failure(_Refused(silent), "127.0.0.1:50051", "r-1") == UNREACHABLE
    err = capsys.readouterr().err
    assert "no answer in time" in err and "--request-id r-1" in err


@pytest.mark.parametrize("code", [code_pb2.INTERNAL, code_pb2.UNKNOWN, code_pb2.DATA_LOSS])
def test_a_change_answered_with_an_error_may_have_been_made(
    capsys: pytest.CaptureFixture[str], code: int
) -> None:
    """A service that crashed after committing answers INTERNAL or UNKNOWN:
    running the command again as it was would make the change twice, so
    how to retry it safely is said, as for no answer."""
    status = status_pb2.Status(code=code, message="boom")
    assert report_failure(_Refused(status), "127.0.0.1:50051", "r-7") == REFUSED
    err = capsys.readouterr().err
    assert "may have been made; to retry it safely" in err and "--request-id r-7" in err


@pytest.mark.parametrize(
    "code",
    [
        code_pb2.INVALID_ARGUMENT, code_pb2.NOT_FOUND, code_pb2.PERMISSION_DENIED,
        code_pb2.FAILED_PRECONDITION, code_pb2.ALREADY_EXISTS, code_pb2.ABORTED,
        code_pb2.UNAUTHENTICATED, code_pb2.RESOURCE_EXHAUSTED, code_pb2.OUT_OF_RANGE,
        code_pb2.UNIMPLEMENTED,
    ],
)  # fmt: skip
def test_a_change_refused_as_it_stood_was_not_made(
    capsys: pytest.CaptureFixture[str], code: int
) -> None:
    status = status_pb2.Status(code=code, message="no")
    assert report_failure(_Refused(status), "127.0.0.1:50051", "r-7") == REFUSED
    assert "--request-id" not in capsys.readouterr().err


class _LosesTheAnswer:
    """Takes each comment, then answers the first as a dropped connection does."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def AddComment(self, request: pb.AddCommentRequest, context: Any) -> pb.Ticket:
        self.ids.append(request.request_id)
        if len(self.ids) == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        return pb.Ticket(name=request.name)


def test_a_change_that_got_no_answer_says_how_to_retry_it_so_it_lands_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = _LosesTheAnswer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    comments = grpc.unary_unary_rpc_method_handler(
        service.AddComment,
        request_deserializer=pb.AddCommentRequest.FromString,
        response_serializer=pb.Ticket.SerializeToString,
    )
    tickets = grpc.method_handlers_generic_handler(
        "casemesh.v1.TicketService", {"AddComment": comments}
    )
    server.add_generic_rpc_handlers((tickets,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    command = ["--token", "t", "--target", f"127.0.0.1:{port}", "comment", "tickets/x", "你好"]
    try:
        with pytest.raises(SystemExit) as first:
            main(command)
        assert first.value.code == 3
        said = capsys.readouterr().err
        retry = said.split("--request-id ")[1].split()[0]
        main([*command, "--request-id", retry])
    finally:
        server.stop(None)
    assert service.ids == [retry, retry] and retry


def test_what_cannot_be_read_or_written_is_bad_input_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gbk = tmp_path / "statement.json"
    gbk.write_bytes('{"decisionFacts": "人工审核"}'.encode("gbk"))
    nowhere = ["--token", "t", "--target", "127.0.0.1:9"]  # nothing listens: no call is made
    assert "not UTF-8" in bad_input(
        capsys, *nowhere, "decide-case", "report-cases/x", "--outcome", "no_violation",
        "--statement", str(gbk),
    )  # fmt: skip
    for out, said in (
        (".", "not a folder"),
        (str(tmp_path), "not a folder"),
        (str(tmp_path / "no" / "x.zip"), "no folder"),
    ):
        assert said in bad_input(capsys, *nowhere, "export", "--out", out)
        assert said in bad_input(capsys, *nowhere, "evidence", "evidence/x", "--out", out)
    odd = tmp_path / os.fsdecode(b"\xff\xfe.png")
    odd.write_bytes(b"\x89PNG")
    assert "not UTF-8" in bad_input(capsys, *nowhere, "upload", str(odd))


def test_a_file_written_is_its_owners_alone_and_a_failed_one_leaves_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "export.zip"
    assert write_whole(out, lambda f: f.write(b"zip")) == 3
    assert out.read_bytes() == b"zip" and stat.S_IMODE(out.stat().st_mode) == 0o600

    def broken(f: Any) -> None:
        f.write(b"half")
        raise OSError(5, "Input/output error")

    with pytest.raises(BadInput):
        write_whole(tmp_path / "other.zip", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.zip"]


class _LongHistory:
    """A copyright case of 201 steps: two pages, as the service cuts at 200."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def ListAppealEvents(
        self, request: apb.ListAppealEventsRequest, context: Any
    ) -> apb.ListAppealEventsResponse:
        self.tokens.append(request.page_token)
        if request.page_token:
            return apb.ListAppealEventsResponse(
                events=[apb.AppealEvent(sequence=201, type="AppealDecided", actor="li")]
            )
        first = [apb.AppealEvent(sequence=i, type="AppealInfoAdded") for i in range(1, 201)]
        return apb.ListAppealEventsResponse(events=first, next_page_token="p2")


def test_appeal_history_shows_every_step_not_the_first_page(
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = _LongHistory()
    methods: Methods = {
        "ListAppealEvents": (
            service.ListAppealEvents,
            apb.ListAppealEventsRequest,
            apb.ListAppealEventsResponse,
        )
    }
    with serving("AppealService", methods) as target:
        main(["--token", "t", "--target", target, "appeal-history", "6d2a"])
        lines = capsys.readouterr().out.splitlines()
        main(["--token", "t", "--target", target, "--json", "appeal-history", "6d2a"])
        shown = json.loads(capsys.readouterr().out)
    assert len(lines) == 201 and lines[-1].split()[3] == "AppealDecided"
    assert len(shown["events"]) == 201 and "nextPageToken" not in shown
    assert service.tokens == ["", "p2", "", "p2"]


# The lists a person reads page after page: its command, where it is served,
# and how an item of it is made.
LISTS: dict[str, tuple[str, str, Any, Any, str, Callable[[int], Any]]] = {
    "list": ("TicketService", "ListTickets", pb.ListTicketsRequest, pb.ListTicketsResponse,
             "tickets", lambda i: pb.Ticket(name=f"tickets/{i}")),
    "appeals": ("AppealService", "ListAppeals", apb.ListAppealsRequest, apb.ListAppealsResponse,
                "appeals", lambda i: apb.Appeal(name=f"appeals/{i}")),
    "reports": ("ReportService", "ListReports", rpb.ListReportsRequest, rpb.ListReportsResponse,
                "reports", lambda i: rpb.Report(name=f"reports/{i}")),
}  # fmt: skip


def _rate_limited(seconds: float) -> status_pb2.Status:
    """The gateway's refusal of a call over a caller's rate limit."""
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="too many requests")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="RATE_LIMITED"))
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromMilliseconds(round(seconds * 1000))
    status.details.add().Pack(retry)
    return status


class _RateLimitedList:
    """`size` items of one of `LISTS`, each page refused once by the rate
    limit (wait 10 ms) before it is answered, as the gateway's limiter does
    to an agent past its burst; from item `stuck_at` on, refused every time."""

    def __init__(self, command: str, size: int, stuck_at: int | None = None) -> None:
        self.service, self.method, self.request, self.response, self.items, self.item = LISTS[
            command
        ]
        self.size, self.stuck_at = size, stuck_at
        self.calls: list[tuple[str, int]] = []  # (page token, page size) of each call

    def answer(self, request: Any, context: Any) -> Any:
        self.calls.append((request.page_token, request.page_size))
        start = int(request.page_token or 0)
        if self.calls.count(self.calls[-1]) == 1 or start == self.stuck_at:
            context.abort_with_status(rpc_status.to_status(_rate_limited(0.01)))
        end = min(self.size, start + (request.page_size or 20))
        return self.response(
            **{self.items: [self.item(i) for i in range(start, end)]},
            next_page_token=str(end) if end < self.size else "",
        )

    def everything(self) -> Any:
        """The whole list as one response, as `emit` prints a response."""
        return self.response(**{self.items: [self.item(i) for i in range(self.size)]})


def _read_list(
    capsys: pytest.CaptureFixture[str], service: _RateLimitedList, *argv: str
) -> tuple[int, str, str]:
    """`casemesh … ARGV` against `service`: its exit status, stdout and stderr."""
    methods: Methods = {service.method: (service.answer, service.request, service.response)}
    with serving(service.service, methods) as target:
        try:
            main(["--token", "t", "--target", target, *argv])
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", LISTS)
def test_a_long_list_waits_out_the_rate_limit_and_shows_every_item(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """An agent's list of every case: pages of 100 (the gateway's most, not
    the services' 20), and a page the rate limit refused asked again, after
    the wait it names, from where it stood, not the whole list failing."""
    service = _RateLimitedList(command, 250)
    code, out, err = _read_list(capsys, service, command)
    assert code == 0, err
    names = [line.split()[0] for line in out.splitlines()]
    assert names == [service.item(i).name for i in range(250)]
    assert service.calls == [(t, 100) for t in ("", "", "100", "100", "200", "200")]


@pytest.mark.parametrize("command", LISTS)
def test_a_list_in_json_is_the_protos_json_of_the_whole_list(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """Printed page by page, the same text as one response holding every
    item; an empty list as an empty response."""
    for size in (250, 0):
        service = _RateLimitedList(command, size)
        code, out, err = _read_list(capsys, service, "--json", command)
        assert code == 0, err
        assert out == json_format.MessageToJson(service.everything(), ensure_ascii=False) + "\n"
    assert json.loads(out) == {}


def test_a_list_failing_part_way_keeps_the_pages_printed_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each page is printed as it comes; a page the limit keeps refusing is
    asked a bounded number of times, then the refusal is the answer."""
    service = _RateLimitedList("list", 250, stuck_at=200)
    code, out, err = _read_list(capsys, service, "list")
    assert code == REFUSED
    assert len(out.splitlines()) == 200 and out.splitlines()[-1].startswith("tickets/199 ")
    assert "only the first 200 were printed" in err and "RESOURCE_EXHAUSTED" in err
    assert service.calls.count(("200", 100)) == 6  # once, and five times again


def test_limit_reads_only_the_pages_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    service = _RateLimitedList("appeals", 250)
    code, out, err = _read_list(capsys, service, "appeals", "--limit", "150")
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()][-1] == "appeals/149"
    assert len(out.splitlines()) == 150 and {t for t, _ in service.calls} == {"", "100"}
    code, out, _ = _read_list(capsys, service, "--json", "appeals", "--limit", "3")
    assert [a["name"] for a in json.loads(out)["appeals"]] == [f"appeals/{i}" for i in range(3)]
    assert "--limit" in bad_input(capsys, "--token", "t", "list", "--limit", "0")


def test_only_a_rate_limit_is_waited_out_and_not_for_long() -> None:
    """Any other refusal, or a wait over a minute, fails the list at once:
    the person is told, rather than left looking at a silent terminal."""
    slept: list[float] = []

    def failing(status: status_pb2.Status) -> None:
        def fetch(token: str) -> Any:
            raise _Refused(status)

        with pytest.raises(grpc.RpcError):
            list(paging.pages(fetch, sleep=slept.append))

    failing(_rate_limited(120))
    failing(status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message="agents only"))
    assert slept == []
    bare = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="too many requests")
    bare.details.add().Pack(error_details_pb2.ErrorInfo(reason="RATE_LIMITED"))
    failing(bare)
    assert slept == [1.0] * paging.RETRIES  # no RetryInfo: a second each time


class _OneTicket:
    """Alice's ticket, with evidence and a rating, and who asked for it."""

    def __init__(self) -> None:
        self.authorization: list[str] = []

    def GetTicket(self, request: pb.GetTicketRequest, context: Any) -> pb.Ticket:
        self.authorization.append(dict(context.invocation_metadata())["authorization"])
        return pb.Ticket(
            name=request.name,
            category="account.login",
            subject="换了手机号无法登录",
            description="旧号码已停用\n\n  resolution: 这一行是描述的一部分",
            locale="zh-CN",
            contact=pb.Contact(
                email="alice@example.com",
                phone="+8613800138000",
                channels=[pb.CHANNEL_EMAIL, pb.CHANNEL_SMS],
            ),
            requester="alice",
            etag="7",
            evidence=[evidence_pb2.EvidenceRef(name=n) for n in ("evidence/9b1e", "evidence/77aa")],
        )

    def ListTicketEvents(
        self, request: pb.ListTicketEventsRequest, context: Any
    ) -> pb.ListTicketEventsResponse:
        created = pb.TicketEvent(
            sequence=1,
            type="TicketCreated",
            actor="alice",
            status=pb.TICKET_STATUS_NEW,
            text="旧号码已停用",
            evidence=[evidence_pb2.EvidenceRef(name="evidence/9b1e")],
        )
        rated = pb.TicketEvent(
            sequence=2, type="TicketRated", actor="alice", status=pb.TICKET_STATUS_SOLVED,
            score=4, text="很快",
        )  # fmt: skip
        return pb.ListTicketEventsResponse(events=[created, rated])


def _ticket_methods(service: Any) -> Methods:
    """`service`'s GetTicket and ListTicketEvents, as `serving` takes them."""
    return {
        "GetTicket": (service.GetTicket, pb.GetTicketRequest, pb.Ticket),
        "ListTicketEvents": (
            service.ListTicketEvents,
            pb.ListTicketEventsRequest,
            pb.ListTicketEventsResponse,
        ),
    }


def test_show_and_history_show_what_the_ticket_holds(capsys: pytest.CaptureFixture[str]) -> None:
    service = _OneTicket()
    methods = _ticket_methods(service)
    with serving("TicketService", methods) as target:
        main(["--target", target, "show", "4f0c", "--token", "t"])  # the token after the command
        shown = capsys.readouterr().out
        main(["--token", "t", "--target", target, "history", "4f0c"])
        history = capsys.readouterr().out.splitlines()
    assert service.authorization == ["Bearer t"]
    assert shown.splitlines()[0].endswith("etag=7")
    assert "email:     alice@example.com   phone: +8613800138000" in shown
    assert "evidence:  evidence/9b1e, evidence/77aa" in shown
    # Every line of the description indented under it: none passes for the ticket's own.
    assert "  description:\n    旧号码已停用\n\n      resolution: 这一行是描述的一部分\n" in shown
    assert "\n  resolution:" not in shown
    # One line a step, the type fourth; what was attached and the score on it.
    assert [line.split()[3] for line in history] == ["TicketCreated", "TicketRated"]
    assert "alice  [evidence/9b1e]  旧号码已停用" in history[0]
    assert history[1].endswith("alice  4/5  很快")


# What a requester may write into a comment: a line shaped like a step of the
# history (an agent solving the ticket), to mislead the agent reading it.
FORGED_STEP = "谢谢\n  3  2030-01-02 03:04:05  TicketSolved     SOLVED    li  已解决"


class _WrittenTo:
    """A solved ticket whose requester and agents wrote text of many lines."""

    def GetTicket(self, request: pb.GetTicketRequest, context: Any) -> pb.Ticket:
        return pb.Ticket(
            name=request.name,
            category="account.login",
            status=pb.TICKET_STATUS_SOLVED,
            priority=pb.PRIORITY_HIGH,
            resolution="已更换绑定手机号\n  rating:    5/5 很满意",
            rating=pb.Rating(score=2, comment="太慢\n  assignee: nobody"),
        )

    def ListTicketEvents(
        self, request: pb.ListTicketEventsRequest, context: Any
    ) -> pb.ListTicketEventsResponse:
        return pb.ListTicketEventsResponse(
            events=[
                pb.TicketEvent(
                    sequence=1, type="CommentAdded", actor="alice",
                    status=pb.TICKET_STATUS_OPEN, text=FORGED_STEP,
                ),
                pb.TicketEvent(
                    sequence=2, type="TicketAssigned", actor="lead",
                    status=pb.TICKET_STATUS_OPEN, assignee="li",
                ),
            ]
        )  # fmt: skip


def _ticket_views(capsys: pytest.CaptureFixture[str]) -> tuple[str, list[str]]:
    """What `show` and `history` print of `_WrittenTo`'s ticket."""
    service = _WrittenTo()
    methods = _ticket_methods(service)
    with serving("TicketService", methods) as target:
        main(["--token", "t", "--target", target, "show", "4f0c"])
        shown = capsys.readouterr().out
        main(["--token", "t", "--target", target, "history", "4f0c"])
        history = capsys.readouterr().out.splitlines()
    return shown, history


def test_text_someone_wrote_never_passes_for_a_line_of_the_view(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every line of a comment, resolution or rating after its first is
    indented: an agent reading the history sees two steps, not a forged
    third one saying the ticket was solved."""
    shown, history = _ticket_views(capsys)
    steps = [line for line in history if not line.startswith("    ")]
    assert [line.split()[3] for line in steps] == ["CommentAdded", "TicketAssigned"]
    assert history[1].startswith("      3  2030-01-02 03:04:05  TicketSolved")
    assert shown.count("\n  rating:") == 1 and "\n      rating:    5/5 很满意\n" in shown
    assert "\n  assignee:" not in shown and "\n      assignee: nobody" in shown


def test_history_says_who_holds_the_ticket_after_a_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, history = _ticket_views(capsys)
    assert history[-1].endswith("TicketAssigned   OPEN      lead  → li")


def test_show_names_the_priority_as_the_queue_does(capsys: pytest.CaptureFixture[str]) -> None:
    shown, _ = _ticket_views(capsys)
    assert shown.splitlines()[0] == "tickets/4f0c  [SOLVED]  account.login  priority=HIGH"


class _TakesChanges:
    """Takes every change to a ticket, keeping the requests."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def take(self, request: Any, context: Any) -> pb.Ticket:
        self.requests.append(request)
        return pb.Ticket(name=request.name)


def test_ticket_changes_carry_an_etag_evidence_and_a_priority(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the API takes, the command line gives: --etag on every change
    but a rating (the API takes none), --evidence on a reply or note,
    --priority on an assignment (unchanged without it)."""
    service = _TakesChanges()
    methods: Methods = {
        method: (service.take, request, pb.Ticket)
        for method, request in (
            ("AddComment", pb.AddCommentRequest),
            ("AssignTicket", pb.AssignTicketRequest),
            ("SolveTicket", pb.SolveTicketRequest),
            ("CloseTicket", pb.CloseTicketRequest),
        )
    }
    with serving("TicketService", methods) as target:
        agent = ["--token", "t", "--target", target]
        main([*agent, "assign", "x", "--to", "li", "--priority", "urgent", "--etag", "7"])
        main([*agent, "assign", "x"])
        main([*agent, "note", "x", "见附件", "--evidence", "evidence/a", "--evidence",
              "evidence/b", "--etag", "8"])  # fmt: skip
        main([*agent, "comment", "x", "好的"])
        main([*agent, "solve", "x", "已更换", "--etag", "9"])
        main([*agent, "close", "x", "--etag", "10"])
    assign, keep, note, comment, solve, close = service.requests
    assert (assign.assignee, assign.priority, assign.etag) == ("li", pb.PRIORITY_URGENT, "7")
    assert (keep.priority, keep.etag) == (pb.PRIORITY_UNSPECIFIED, "")
    assert [e.name for e in note.evidence] == ["evidence/a", "evidence/b"]
    assert note.internal and note.etag == "8"
    assert not comment.evidence and not comment.etag
    assert (solve.etag, close.etag) == ("9", "10")
    assert "--etag" in bad_input(capsys, "--token", "t", "rate", "x", "5", "--etag", "7")


class _DamagedOnTheWay:
    """Evidence whose bytes arrive other than they were stored."""

    def GetEvidence(self, request: Any, context: Any) -> Any:
        return evidence_pb2.Evidence(
            name=request.name,
            media_type="image/png",
            size_bytes=6,
            sha256=hashlib.sha256(b"stored").hexdigest(),
        )

    def ReadEvidence(self, request: Any, context: Any) -> Iterator[Any]:
        yield evidence_pb2.ReadEvidenceResponse(chunk=b"stoned")


def test_a_download_damaged_on_the_way_is_a_failed_transfer_not_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 3 (worth retrying), saying the bytes already on stdout are
    unusable; to a file, none is left."""
    service = _DamagedOnTheWay()
    methods: Methods = {
        "GetEvidence": (
            service.GetEvidence,
            evidence_pb2.GetEvidenceRequest,
            evidence_pb2.Evidence,
        ),
        "ReadEvidence": (
            service.ReadEvidence,
            evidence_pb2.ReadEvidenceRequest,
            evidence_pb2.ReadEvidenceResponse,
        ),
    }
    with serving("EvidenceService", methods) as target:
        with pytest.raises(SystemExit) as to_stdout:
            main(["--token", "t", "--target", target, "evidence", "e1"])
        err = capsys.readouterr().err
        out = tmp_path / "copy.png"
        with pytest.raises(SystemExit) as to_file:
            main(["--token", "t", "--target", target, "evidence", "e1", "--out", str(out)])
    assert to_stdout.value.code == UNREACHABLE and to_file.value.code == UNREACHABLE
    assert "do not match its sha256" in err and "written to stdout is unusable" in err
    assert f"nothing was written to {out}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_unavailable_says_whether_the_gateway_answered(capsys: pytest.CaptureFixture[str]) -> None:
    """The gateway answered (its status details came): a service behind it
    is away, and the change may have been made. Nothing listening: the
    change never left, so nothing may have been made."""
    said = "服务暂时不可用，请稍后重试"
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=said)
    assert report_failure(_Refused(status), "127.0.0.1:50051", "r-1") == UNREACHABLE
    err = capsys.readouterr().err
    assert "the gateway at 127.0.0.1:50051 answered: it, or a service behind it, is" in err
    assert "is it running" not in err and "--request-id r-1" in err
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(SystemExit) as refused:
        main(["--token", "t", "--target", f"127.0.0.1:{port}", "comment", "x", "你好"])
    err = capsys.readouterr().err
    assert refused.value.code == UNREACHABLE
    assert "is it running?" in err and "may have been made" not in err


class _Decides:
    """Takes decisions on copyright cases, keeping the requests."""

    def __init__(self) -> None:
        self.requests: list[apb.DecideAppealRequest] = []

    def DecideAppeal(self, request: apb.DecideAppealRequest, context: Any) -> apb.Appeal:
        self.requests.append(request)
        return apb.Appeal(name=request.name)


def test_an_uploader_named_by_any_option_is_sent() -> None:
    """--uploader-name or --uploader-locale alone still names an uploader:
    sent, for the service to take or refuse, never silently dropped."""
    service = _Decides()
    methods: Methods = {"DecideAppeal": (service.DecideAppeal, apb.DecideAppealRequest, apb.Appeal)}
    decide = ["decide-appeal", "a1", "--outcome", "uphold", "--ground", "g", "--facts", "f",
              "--etag", "3"]  # fmt: skip
    with serving("AppealService", methods) as target:
        for named in (["--uploader-name", "李博"], ["--uploader-locale", "en"], []):
            main(["--token", "t", "--target", target, *decide, *named])
    by_name, by_locale, none = service.requests
    assert (by_name.affected_uploader.legal_name, by_name.affected_uploader.locale) == (
        "李博",
        "zh-CN",
    )
    assert by_locale.HasField("affected_uploader") and by_locale.affected_uploader.locale == "en"
    assert not none.HasField("affected_uploader")


class _TakesReports:
    def __init__(self) -> None:
        self.requests: list[rpb.FileReportRequest] = []

    def FileReport(self, request: rpb.FileReportRequest, context: Any) -> rpb.Report:
        self.requests.append(request)
        return rpb.Report(name="reports/r1", target=request.report.target)


def test_a_report_is_filed_only_with_the_reporters_good_faith_statement(
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = _TakesReports()
    methods: Methods = {"FileReport": (service.FileReport, rpb.FileReportRequest, rpb.Report)}
    report = ["report", "--id", "7731", "--reason", "harassment/bullying", "--explanation",
              "辱骂", "--evidence", "evidence/9b1e", "--email", "a@example.com"]  # fmt: skip
    with serving("ReportService", methods) as target:
        assert "--good-faith" in bad_input(capsys, "--token", "t", "--target", target, *report)
        main(["--token", "t", "--target", target, *report, "--good-faith"])
    (filed,) = service.requests
    assert filed.report.good_faith_statement


class _DecidedCases:
    """A decided report case appealed, a void one, a reversed report, and a
    decision appeal in review."""

    def GetReportCase(self, request: rpb.GetReportCaseRequest, context: Any) -> rpb.ReportCase:
        if request.name == "report-cases/void":
            return rpb.ReportCase(
                name=request.name, state=rpb.REPORT_CASE_STATE_VOID,
                void_reason="视频已被作者删除\n  reports/forged",
            )  # fmt: skip
        return rpb.ReportCase(
            name=request.name,
            state=rpb.REPORT_CASE_STATE_ACTION_TAKEN,
            assignee="li",
            reports=["reports/r1"],
            decision=rpb.DecisionStatement(decision_facts="第 12 秒起\n  reports/forged"),
            affected_uploader=apb.Party(user_id="bob", legal_name="李博"),
            appeals=["appeals/a1"],
        )

    def GetReport(self, request: rpb.GetReportRequest, context: Any) -> rpb.Report:
        return rpb.Report(
            name=request.name,
            report_case="report-cases/c1",
            explanation="视频里是我的照片\n未经同意",
            evidence=[evidence_pb2.EvidenceRef(name="evidence/e1")],
            outcome=rpb.ReportOutcome(
                decision_facts="第 12 秒起",
                reversed=True,
                redress="可在六个月内申诉\n或向法院起诉",
            ),
        )

    def GetAppeal(self, request: apb.GetAppealRequest, context: Any) -> apb.Appeal:
        return apb.Appeal(
            name=request.name,
            kind=apb.APPEAL_KIND_DECISION_APPEAL,
            state=apb.APPEAL_STATE_UNDER_REVIEW,
            assignee="li",
            appeal_of="appeals/n1",
            grounds="决定有误\n视频是原创",
            decision_reasons=apb.StatementOfReasons(
                ground="g", facts="第一点\n  missing:   nothing"
            ),
        )

    def ListAppealEvents(
        self, request: apb.ListAppealEventsRequest, context: Any
    ) -> apb.ListAppealEventsResponse:
        said = apb.AppealEvent(sequence=1, type="AppealInfoAdded", actor="bob", text=FORGED_STEP)
        return apb.ListAppealEventsResponse(events=[said])


def _case_views(capsys: pytest.CaptureFixture[str], *commands: list[str]) -> list[str]:
    """What each command prints of `_DecidedCases`."""
    service = _DecidedCases()
    reports: Methods = {
        "GetReportCase": (service.GetReportCase, rpb.GetReportCaseRequest, rpb.ReportCase),
        "GetReport": (service.GetReport, rpb.GetReportRequest, rpb.Report),
    }
    appeals: Methods = {
        "GetAppeal": (service.GetAppeal, apb.GetAppealRequest, apb.Appeal),
        "ListAppealEvents": (
            service.ListAppealEvents,
            apb.ListAppealEventsRequest,
            apb.ListAppealEventsResponse,
        ),
    }
    shown = []
    with serving("ReportService", reports) as at_reports, serving("AppealService", appeals) as at:
        for command in commands:
            target = at if command[0].startswith("appeal") else at_reports
            main(["--token", "t", "--target", target, *command])
            shown.append(capsys.readouterr().out)
    return shown


def test_case_views_show_every_field_they_hold(capsys: pytest.CaptureFixture[str]) -> None:
    case, void, report, appeal = _case_views(
        capsys, ["report-case", "c1"], ["report-case", "void"], ["report-show", "r1"],
        ["appeal", "a1"],
    )  # fmt: skip
    assert "\n  assignee: li\n" in case and "\n  uploader: bob (李博)\n" in case
    assert "\n  appealed: appeals/a1\n" in case
    assert "\n  void:     视频已被作者删除\n" in void
    assert "\n  reversed on appeal\n" in report and "\n  redress: 可在六个月内申诉\n" in report
    assert appeal.startswith("appeals/a1  [UNDER_REVIEW]  DECISION_APPEAL ")
    assert "\n  assignee:  li\n" in appeal
    assert "\n  appeal of: appeals/n1\n" in appeal
    assert "\n  grounds:   决定有误\n    视频是原创\n" in appeal
    assert "\n  explanation: 视频里是我的照片\n    未经同意\n" in report
    assert "\n  evidence: evidence/e1\n" in report


def test_case_views_indent_what_people_wrote(capsys: pytest.CaptureFixture[str]) -> None:
    """A decision's facts, a void reason, redress and a case's history as
    the ticket's: every line after the first indented."""
    case, void, report, appeal, history = _case_views(
        capsys, ["report-case", "c1"], ["report-case", "void"], ["report-show", "r1"],
        ["appeal", "a1"], ["appeal-history", "a1"],
    )  # fmt: skip
    for view in (case, void):
        assert "\n  reports/forged" not in view and "\n      reports/forged" in view
    assert "\n    或向法院起诉" in report
    assert "\n  missing:" not in appeal and "\n      missing:   nothing" in appeal
    steps = [line for line in history.splitlines() if not line.startswith("    ")]
    assert len(steps) == 1 and "      3  2030-01-02 03:04:05  TicketSolved" in history
