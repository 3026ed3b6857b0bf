"""The command-line client, as a person at a terminal uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import tickets_pb2 as pb
from casemesh_devstack.ports import free_port
from tests.conftest import Stack
from tests.e2e import test_appeals, test_reports
from tests.e2e.test_evidence import png
from tests.support import Client, wait_until


def casemesh(stack: Stack, *args: str, **run: Any) -> subprocess.CompletedProcess[Any]:
    """The client as a person runs it (`run` overrides subprocess.run's arguments:
    `env`, `cwd`, `text=False` for bytes on stdout)."""
    options: dict[str, Any] = {
        "capture_output": True,
        "text": True,
        "timeout": 60,
        "env": {**os.environ, "CASEMESH_JWT_SECRET": stack.secret},
    }
    return subprocess.run(
        [sys.executable, "-m", "casemesh_cli", "--target", stack.gateway, *args],
        **{**options, **run},
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
    assert "Traceback" not in bad.stderr


def test_a_bad_argument_gives_usage_and_exit_2(stack: Stack) -> None:
    for argv in (
        ("rate", "tickets/x", "9"),
        ("list", "--status", "lost"),
        ("open", "--category"),
        ("decide-appeal", "appeals/x", "--outcome", "maybe", "--ground", "g", "--facts", "f"),
        (),
    ):
        bad = casemesh(stack, *argv)
        assert bad.returncode == 2, (argv, bad.stderr)
        assert "usage: casemesh" in bad.stderr and "Traceback" not in bad.stderr, argv
        assert bad.stdout == ""


def test_an_unreachable_gateway_exits_3(stack: Stack) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    down = casemesh(stack, "--target", nobody, "list")
    assert down.returncode == 3, down.stderr
    assert "UNAVAILABLE" in down.stderr and nobody in down.stderr
    assert "Traceback" not in down.stderr


def test_json_output_is_the_servers_ticket(stack: Stack) -> None:
    user = f"cli-json-{uuid.uuid4().hex[:6]}"
    opened = casemesh(
        stack, "--as", user, "--json", "open", "--category", "account.login",
        "--subject", "换了手机号无法登录", "--description", "收不到验证码",
        "--email", f"{user}@example.com",
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    ticket = json.loads(opened.stdout)
    assert ticket["status"] == "TICKET_STATUS_NEW" and ticket["subject"] == "换了手机号无法登录"
    served = Client(stack.gateway, stack.secret, user).GetTicket(
        pb.GetTicketRequest(name=ticket["name"])
    )
    assert ticket == json_format.MessageToDict(served)
    shown = casemesh(stack, "--as", user, "--json", "show", ticket["name"])
    assert json.loads(shown.stdout) == ticket
    listed = json.loads(casemesh(stack, "--as", user, "--json", "list").stdout)
    assert [t["name"] for t in listed["tickets"]] == [ticket["name"]]
    history = json.loads(casemesh(stack, "--as", user, "--json", "history", ticket["name"]).stdout)
    assert [e["type"] for e in history["events"]] == ["TicketCreated"]


def test_a_token_from_a_file_or_the_environment(stack: Stack, tmp_path: Path) -> None:
    user = f"cli-tok-{uuid.uuid4().hex[:6]}"
    minted = casemesh(stack, "--as", user, "token")
    assert minted.returncode == 0, minted.stderr
    token_file = tmp_path / "token"
    token_file.write_text(minted.stdout)
    # No secret to mint with, and nowhere to find one: the file is what is used.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEMESH_")}
    listed = casemesh(stack, "--token-file", str(token_file), "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    env_file = {**env, "CASEMESH_TOKEN_FILE": str(token_file)}
    whoami = casemesh(
        stack, "open", "--category", "other.general", "--subject", "s", "--description", "d",
        "--email", f"{user}@example.com", env=env_file, cwd=tmp_path,
    )  # fmt: skip
    assert whoami.returncode == 0 and f"requester: {user}" in whoami.stdout, whoami.stderr
    # A token the gateway refuses: named as such, never shown.
    token_file.write_text("not.a.jwt\n")
    refused = casemesh(stack, "--token-file", str(token_file), "list", env=env, cwd=tmp_path)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    assert "not.a.jwt" not in refused.stderr


def test_evidence_reads_back_as_uploaded(stack: Stack, tmp_path: Path) -> None:
    user = f"cli-ev-{uuid.uuid4().hex[:6]}"
    data = png(extra=700_000)  # more than one chunk each way
    shot = tmp_path / "shot.png"
    shot.write_bytes(data)
    uploaded = casemesh(stack, "--as", user, "--json", "upload", str(shot))
    assert uploaded.returncode == 0, uploaded.stderr
    name = json.loads(uploaded.stdout)["name"]
    copy = tmp_path / "copy.png"
    read = casemesh(stack, "--as", user, "evidence", name, "--out", str(copy))
    assert read.returncode == 0, read.stderr
    assert copy.read_bytes() == data
    assert name in read.stdout and "image/png" in read.stdout and "shot.png" in read.stdout
    agent = ("--as", f"agent-{user}", "--role", "agent")
    piped = casemesh(stack, *agent, "evidence", name, text=False)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == data and name.encode() in piped.stderr
    stranger = casemesh(stack, "--as", f"other-{user}", "evidence", name, "--out", str(copy))
    assert stranger.returncode == 1 and "NOT_FOUND" in stranger.stderr
    assert copy.read_bytes() == data  # a refused read leaves the file as it was
    # Their uploads, listed; the stranger has none.
    listed = casemesh(stack, "--as", user, "uploads")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith(f"{name}  image/png")
    assert casemesh(stack, "--as", f"other-{user}", "uploads").stdout == ""


def test_an_agent_decides_a_copyright_notice(stack: Stack) -> None:
    claimant, uploader, agent, email, _, uploader_email = test_appeals.new_people(stack)
    proof = claimant.evidence.upload(png(), "screenshot.png")
    # The complete notice README.md files with grpcurl.
    notice = {
        "request_id": "notice-2",
        "appeal": {
            "kind": "APPEAL_KIND_TAKEDOWN_NOTICE",
            "good_faith_statement": True,
            "accuracy_statement": True,
            "filer": {
                "legal_name": "Alice",
                "locale": "zh-CN",
                "contact": {"email": email, "channels": ["CHANNEL_EMAIL"]},
            },
            "notice": {
                "relationship": "RIGHTS_RELATIONSHIP_OWNER",
                "work": {"title": "江南春", "creation_time": "2025-12-01T08:00:00Z"},
                "originality_evidence": [{"name": proof.name}],
                "infringing_items": ["https://video.example/v/7731"],
                "infringement_evidence": [{"name": proof.name}],
            },
        },
    }
    case = claimant.FileAppeal(json_format.ParseDict(notice, apb.FileAppealRequest()))
    assert case.state == apb.APPEAL_STATE_SUBMITTED
    as_agent = ("--as", agent.user, "--role", "agent")
    decide = (
        "decide-appeal", case.name, "--outcome", "uphold",
        "--ground", "《信息网络传播权保护条例》第十四条", "--facts", "被投诉视频与原创视频画面一致",
        "--uploader", uploader.user, "--uploader-email", uploader_email, "--uploader-locale", "en",
    )  # fmt: skip
    # A decision on the case as it was read before someone changed it: refused.
    agent.AssignAppeal(apb.AssignAppealRequest(name=case.name))
    stale = casemesh(stack, *as_agent, *decide, "--etag", case.etag)
    assert stale.returncode == 1 and "ABORTED" in stale.stderr, stale.stderr
    decided = casemesh(stack, *as_agent, "--json", *decide)
    assert decided.returncode == 0, decided.stderr
    appeal = json.loads(decided.stdout)
    assert appeal["state"] == "APPEAL_STATE_UPHELD"
    assert appeal["decisionReasons"]["ground"] == "《信息网络传播权保护条例》第十四条"
    assert appeal["uploader"]["userId"] == uploader.user
    shown = casemesh(stack, "--as", claimant.user, "appeal", case.name)
    assert "[UPHELD]" in shown.stdout and "被投诉视频与原创视频画面一致" in shown.stdout
    again = casemesh(stack, *as_agent, *decide)
    assert again.returncode == 1 and "FAILED_PRECONDITION" in again.stderr
    assert "Traceback" not in again.stderr


def test_an_agent_decides_report_cases_with_a_statement(stack: Stack, tmp_path: Path) -> None:
    run, (reporter, other), agent = test_reports.people(stack, 2)
    as_agent = ("--as", agent.user, "--role", "agent")
    report = reporter.report(f"cli{run}", email=f"{reporter.user}@example.com")
    today = test_reports.service_now(stack).date().isoformat()
    statement = tmp_path / "statement.json"  # as README.md writes it
    statement.write_text(
        json.dumps(
            {
                "decisionGround": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
                "incompatibleContentGround": "社区自律公约 第 3.2 条：禁止宣扬恐怖主义",
                "incompatibleContentExplanation": "视频展示并美化恐怖袭击。",
                "contentType": ["CONTENT_TYPE_VIDEO"],
                "contentDate": today,
                "applicationDate": today,
                "decisionFacts": "人工审核确认视频第 12 秒起出现袭击画面。",
                "automatedDecision": "AUTOMATED_DECISION_NOT_AUTOMATED",
                "restrictions": {"visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"]},
            }
        )
    )
    decided = casemesh(
        stack, *as_agent, "--json", "decide-case", report.report_case, "--outcome", "action_taken",
        "--statement", str(statement), "--uploader", f"uploader-{run}",
        "--uploader-email", f"uploader-{run}@example.com",
    )  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    case = json.loads(decided.stdout)
    assert case["state"] == "REPORT_CASE_STATE_ACTION_TAKEN"
    assert case["decision"]["decisionGround"] == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    assert case["decision"]["puid"] == f"cli{run}"
    # No violation: the facts alone, and a report judged manifestly unfounded.
    baseless = other.report(f"cli{run}b", email=f"{other.user}@example.com")
    cleared = casemesh(
        stack, *as_agent, "decide-case", baseless.report_case, "--outcome", "no_violation",
        "--facts", "普通的舞蹈视频，没有任何违规内容。", "--unfounded", baseless.name,
    )  # fmt: skip
    assert cleared.returncode == 0, cleared.stderr
    assert "[NO_VIOLATION]" in cleared.stdout
    wait_until(
        lambda: (
            other.GetReport(rpb.GetReportRequest(name=baseless.name)).outcome.manifestly_unfounded
        ),
        timeout=30,
    )
    # A statement missing a required field: the field is named, nothing changes.
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"decisionFacts": "见视频"}))
    third = reporter.report(f"cli{run}c", email=f"{reporter.user}@example.com")
    refused = casemesh(
        stack, *as_agent, "decide-case", third.report_case, "--outcome", "action_taken",
        "--statement", str(bare), "--uploader", f"uploader-{run}",
        "--uploader-email", f"uploader-{run}@example.com",
    )  # fmt: skip
    assert refused.returncode == 1 and "statement.decision_ground" in refused.stderr
    assert "Traceback" not in refused.stderr


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
        "--good-faith",
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
        "--good-faith",
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


def test_download_my_data_and_an_admin_erases_me(stack: Stack, tmp_path: Path) -> None:
    user = f"cli-{uuid.uuid4().hex[:6]}"
    opened = casemesh(
        stack, "--as", user, "open", "--category", "account.login", "--subject",
        "登录不了", "--description", "验证码收不到", "--email", f"{user}@example.com",
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    name = opened.stdout.split()[0]
    archive = tmp_path / "mine.zip"

    def exported() -> dict[str, Any] | None:
        done = casemesh(stack, "--as", user, "export", "--out", str(archive))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{archive}  ")
        with zipfile.ZipFile(archive) as zipped:
            found: dict[str, Any] = json.loads(zipped.read("casemesh-export.json"))
        return found if found.get("tickets") else None

    found = wait_until(exported, timeout=30, interval=0.5)
    assert [t["ticket"]["name"] for t in found["tickets"]] == [name]
    assert found["tickets"][0]["ticket"]["subject"] == "登录不了"
    # Another person's data is for admins; an erasure too.
    refused = casemesh(stack, "--as", "nosy", "export", "--person", user, "--out", str(archive))
    assert refused.returncode == 1 and "admin" in refused.stderr
    admin = ("--as", "privacy-desk", "--role", "admin")
    erased = casemesh(stack, *admin, "erase", user, "--reason", "PD-2026-0042")
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"erased {user}  1 data key  at ")
