"""A report's personal data is sealed where it is kept for ever (the reports
event store, the casemesh.reports.v1 topic) and clear where people read it
(the report and the case through the gateway, the e-mails the reporter and
the uploader get)."""

from __future__ import annotations

import uuid

import psycopg

from casemesh.platform.personal.sealing import CASE_PREFIX
from casemesh.v1 import reports_pb2 as rpb
from tests.conftest import Stack
from tests.e2e.test_reports import Person, party, read_reports_topic
from tests.support import wait_until


def test_a_reports_personal_data_is_sealed_at_rest_and_on_the_topic_yet_read_in_clear(
    stack: Stack,
) -> None:
    run = uuid.uuid4().hex[:6]  # in ids, which are kept clear
    mark = uuid.uuid4().hex[:10]  # in what people wrote, which is not
    reporter = Person(stack, f"rep-{run}")
    agent = Person(stack, f"agent-{run}", "agent")
    uploader = Person(stack, f"uploader-{run}")
    explanation = f"视频第 {mark} 秒出现袭击画面"
    email = f"sealed.{mark}@example.com"
    phone = f"+86139{uuid.uuid4().int % 10**8:08d}"
    legal_name = f"Uploader {mark} Ltd"
    uploader_email = f"uploader.{mark}@example.com"
    filed = reporter.report(f"v{run}", email=email, phone=phone, explanation=explanation)
    case_name = filed.report_case
    agent.AssignReportCase(rpb.AssignReportCaseRequest(name=case_name))
    agent.take_action(stack, case_name, party(uploader.user, uploader_email, "zh-CN", legal_name))
    proof = filed.evidence[0].name

    # Each hears back: the notifier revealed their addresses.
    wait_until(lambda: len(stack.mail.to(email)) >= 2, timeout=60)
    wait_until(lambda: stack.mail.to(uploader_email), timeout=60)
    # People read the report and the case in the clear.
    mine = reporter.GetReport(rpb.GetReportRequest(name=filed.name))
    assert (mine.explanation, mine.contact.email, mine.contact.phone) == (explanation, email, phone)
    assert [e.name for e in mine.evidence] == [proof]
    assert mine.state == rpb.REPORT_STATE_ACTION_TAKEN
    seen = uploader.GetReportCase(rpb.GetReportCaseRequest(name=case_name))
    named = seen.affected_uploader
    assert (named.legal_name, named.contact.email) == (legal_name, uploader_email)

    clear = [s.encode() for s in (mark, email, phone, proof)]
    ids = [filed.name.split("/")[1], case_name.split("/")[1]]
    # In the event store: tokens, never the text.
    with psycopg.connect(stack.reports_dsn) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, state FROM reports_events"
            " WHERE originator_id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    stored = [bytes(state) for _, _, state in rows]
    assert len(stored) >= 5  # filed, resolved; opened, assigned, decided
    # The report's and the decision's, each under its person's key and the
    # report case's (its retention destroys the latter).
    assert sum(CASE_PREFIX.encode() in s for s in stored) >= 2
    assert not [c for c in clear for s in stored if c in s]
    # On the topic: likewise, once every one of those events is there.
    want = {f"{oid}:{version}" for oid, version, _ in rows}

    def relayed() -> list[bytes] | None:
        mine = [r for r in read_reports_topic(stack, settle_s=0.5) if r[0] in ids]
        if not want <= {headers["ce_id"] for _, headers, _ in mine}:
            return None
        return [k.encode() + "".join(h.values()).encode() + v for k, h, v in mine]

    records = wait_until(relayed, timeout=60, interval=1)
    assert sum(CASE_PREFIX.encode() in r for r in records) >= 2
    assert not [c for c in clear for r in records if c in r]
