"""The command-line client, as a person at a terminal uses it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.e2e.test_evidence import png
from tests.support import Client


def casemesh(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "casemesh_cli", "--target", stack.gateway, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CASEMESH_JWT_SECRET": stack.secret},
    )


def test_open_show_and_solve_from_the_command_line(stack: Stack) -> None:
    user = f"cli-{uuid.uuid4().hex[:6]}"
    opened = casemesh(
        stack,
        "--as",
        user,
        "open",
        "--category",
        "account.phone_change",
        "--subject",
        "更换绑定手机号",
        "--description",
        "旧号码已停用",
        "--email",
        f"{user}@example.com",
    )
    assert opened.returncode == 0, opened.stderr
    name = opened.stdout.split()[0]
    assert name.startswith("tickets/") and "[NEW]" in opened.stdout
    assert f"requester: {user}" in opened.stdout
    solved = casemesh(stack, "--as", "agent-cli", "--role", "agent", "solve", name, "已更换")
    assert solved.returncode == 0, solved.stderr
    assert "[SOLVED]" in solved.stdout
    history = casemesh(stack, "--as", user, "history", name)
    assert [line.split()[3] for line in history.stdout.splitlines()] == [
        "TicketCreated",
        "TicketSolved",
    ]


def test_the_command_line_names_the_bad_field(stack: Stack) -> None:
    bad = casemesh(
        stack,
        "open",
        "--category",
        "nope",
        "--subject",
        "s",
        "--description",
        "d",
        "--email",
        "x@example.com",
    )
    assert bad.returncode == 1
    assert "INVALID_ARGUMENT" in bad.stderr
    assert "ticket.category" in bad.stderr


def test_a_user_id_in_any_script_is_carried_to_the_service(stack: Stack) -> None:
    user = f"用户-{uuid.uuid4().hex[:6]}"
    client = Client(stack.gateway, stack.secret, user)
    created = client.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="other.general",
                subject="s",
                description="d",
                locale="zh-CN",
                contact=pb.Contact(email="u@example.com", channels=[pb.CHANNEL_EMAIL]),
            ),
            request_id="unicode-1",
        )
    )
    assert created.requester == user
    assert client.GetTicket(pb.GetTicketRequest(name=created.name)).requester == user


def test_upload_a_screenshot_and_attach_it_to_a_new_ticket(stack: Stack, tmp_path: Path) -> None:
    user = f"cli-{uuid.uuid4().hex[:6]}"
    shot = tmp_path / "截图.png"
    shot.write_bytes(png())
    uploaded = casemesh(stack, "--as", user, "upload", str(shot))
    assert uploaded.returncode == 0, uploaded.stderr
    name = uploaded.stdout.split()[0]
    assert name.startswith("evidence/") and "image/png" in uploaded.stdout
    opened = casemesh(
        stack,
        "--as",
        user,
        "open",
        "--category",
        "content.review_rejected",
        "--subject",
        "审核未通过",
        "--description",
        "见截图",
        "--email",
        f"{user}@example.com",
        "--evidence",
        name,
    )
    assert opened.returncode == 0, opened.stderr
    stranger = casemesh(
        stack,
        "--as",
        "someone-else",
        "open",
        "--category",
        "other.general",
        "--subject",
        "s",
        "--description",
        "d",
        "--email",
        "x@example.com",
        "--evidence",
        name,
    )
    assert stranger.returncode == 1 and "PERMISSION_DENIED" in stranger.stderr


def test_follow_a_copyright_case_from_the_command_line(stack: Stack) -> None:
    from casemesh.v1 import appeals_pb2 as apb
    from casemesh.v1 import appeals_pb2_grpc as apb_grpc
    from tests.support import Client as GatewayClient

    user = f"cli-{uuid.uuid4().hex[:6]}"
    client = GatewayClient(stack.gateway, stack.secret, user)
    case = apb_grpc.AppealServiceStub(client._channel).FileAppeal(
        apb.FileAppealRequest(
            request_id="cli-1",
            appeal=apb.Appeal(
                kind=apb.APPEAL_KIND_TAKEDOWN_NOTICE,
                filer=apb.Party(
                    legal_name="CLI",
                    locale="en",
                    contact=pb.Contact(email=f"{user}@example.com", channels=[pb.CHANNEL_EMAIL]),
                ),
            ),
        ),
        metadata=client.metadata,
        timeout=15,
    )
    listed = casemesh(stack, "--as", user, "appeals")
    assert listed.returncode == 0, listed.stderr
    assert case.name in listed.stdout and "INFO_REQUESTED" in listed.stdout
    shown = casemesh(stack, "--as", user, "appeal", case.name)
    assert "missing:" in shown.stdout and "good_faith_statement" in shown.stdout
    history = casemesh(stack, "--as", user, "appeal-history", case.name)
    assert "AppealFiled" in history.stdout


def test_report_a_video_and_see_it_in_the_queue(stack: Stack, tmp_path: Path) -> None:
    user = f"cli-rep-{uuid.uuid4().hex[:6]}"
    shot = tmp_path / "shot.png"
    shot.write_bytes(png())
    uploaded = casemesh(stack, "--as", user, "upload", str(shot))
    assert uploaded.returncode == 0, uploaded.stderr
    evidence = uploaded.stdout.split()[0]
    reasons = casemesh(stack, "--as", user, "reasons")
    assert "harassment/bullying" in reasons.stdout and "骚扰欺凌" in reasons.stdout
    video = uuid.uuid4().hex[:10]
    filed = casemesh(
        stack,
        "--as",
        user,
        "report",
        "--url",
        f"https://www.casemesh.video/@someone/video/{video}",
        "--reason",
        "harassment/bullying",
        "--explanation",
        "评论区持续辱骂",
        "--evidence",
        evidence,
        "--email",
        f"{user}@example.com",
    )
    assert filed.returncode == 0, filed.stderr
    assert "[SUBMITTED]" in filed.stdout and f"VIDEO {video}" in filed.stdout
    mine = casemesh(stack, "--as", user, "reports")
    assert filed.stdout.split()[0] in mine.stdout
    queue = casemesh(stack, "--as", "li", "--role", "agent", "queue", "--category", "harassment")
    assert queue.returncode == 0, queue.stderr
    assert video in queue.stdout
    refused = casemesh(stack, "--as", user, "queue")
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    bad = casemesh(
        stack, "--as", user, "report", "--id", video, "--reason", "copyright/x",
        "--explanation", "搬运", "--evidence", evidence, "--email", f"{user}@example.com",
    )  # fmt: skip
    assert bad.returncode == 1 and "report.reason.category" in bad.stderr


def test_an_agent_works_the_queue_from_the_command_line(stack: Stack) -> None:
    user = f"cli-q-{uuid.uuid4().hex[:6]}"
    opened = casemesh(
        stack, "--as", user, "open", "--category", "ads.delivery_data", "--subject", "广告扣费异常",
        "--description", "重复扣费", "--email", f"{user}@example.com",
    )  # fmt: skip
    name = opened.stdout.split()[0]
    agent = ("--as", f"agent-{user}", "--role", "agent")
    listed = casemesh(stack, *agent, "cases", "--queue", "ads")
    deadline = time.monotonic() + 30
    while name not in listed.stdout and time.monotonic() < deadline:
        time.sleep(0.5)
        listed = casemesh(stack, *agent, "cases", "--queue", "ads")
    assert name in listed.stdout and "ON_TRACK" in listed.stdout
    claimed = casemesh(stack, *agent, "next", "--queue", "ads")
    assert claimed.returncode == 0 and f"held by agent-{user}" in claimed.stdout
    released = casemesh(stack, *agent, "release", claimed.stdout.split()[0])
    assert released.returncode == 0, released.stderr
    refused = casemesh(stack, "--as", user, "cases")
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
