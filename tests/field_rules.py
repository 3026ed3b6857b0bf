"""Requests that break the field rules written in the protos (`buf.validate`
annotations), one for each annotated field, and the field each must be refused
for; and the bad `CreateTicket` the gateway has always answered with the same
field violations. The unit tests check the table covers every annotation; the
end-to-end tests send it through the gateway."""

from __future__ import annotations

from typing import Any

from buf.validate import validate_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import casequeue_pb2 as qpb
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import notifications_pb2 as npb
from casemesh.v1 import privacy_pb2 as ppb
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import tickets_pb2 as pb

PUBLIC = (pb, apb, rpb, qpb, epb, hpb, ppb, npb)

# A number no enum in the contract defines (clients can send any number).
UNDEFINED: Any = 42
TICKET = "tickets/01234567-89ab-cdef-0123-456789abcdef"
ARTICLE = "articles/login-no-sms-code"
PHONE = "+8613800138000"
PHONE_CHANGE = "phone-changes/01234567-89ab-cdef-0123-456789abcdef"

# (request, the field it must be refused for)
CASES: list[tuple[Message, str]] = [
    (pb.CreateTicketRequest(request_id="ok"), "ticket"),
    (pb.CreateTicketRequest(request_id="a b", ticket=pb.Ticket()), "request_id"),
    (pb.CreateTicketRequest(ticket=pb.Ticket(subject="   ")), "ticket.subject"),
    (pb.CreateTicketRequest(ticket=pb.Ticket(description="")), "ticket.description"),
    (pb.CreateTicketRequest(ticket=pb.Ticket(locale="fr")), "ticket.locale"),
    (pb.GetTicketRequest(name="tickets/../../etc"), "name"),
    (pb.ListTicketsRequest(page_size=-1), "page_size"),
    (pb.SearchTicketsRequest(page_size=-1), "page_size"),
    (pb.AddCommentRequest(name="tickets/x", body="hi"), "name"),
    (pb.AddCommentRequest(name=TICKET, body=" "), "body"),
    (pb.AddCommentRequest(name=TICKET, body="hi", etag="v1"), "etag"),
    (pb.AddCommentRequest(name=TICKET, body="hi", request_id="a b"), "request_id"),
    (pb.AssignTicketRequest(name="tickets/x"), "name"),
    (pb.AssignTicketRequest(name=TICKET, assignee="x" * 129), "assignee"),
    (pb.AssignTicketRequest(name=TICKET, priority=UNDEFINED), "priority"),
    (pb.AssignTicketRequest(name=TICKET, etag="v1"), "etag"),
    (pb.AssignTicketRequest(name=TICKET, request_id="a b"), "request_id"),
    (pb.RequestInfoRequest(name="", message="?"), "name"),
    (pb.RequestInfoRequest(name=TICKET, message=""), "message"),
    (pb.RequestInfoRequest(name=TICKET, message="?", etag="0"), "etag"),
    (pb.RequestInfoRequest(name=TICKET, message="?", request_id="x" * 65), "request_id"),
    (pb.HoldTicketRequest(name="tickets/"), "name"),
    (pb.HoldTicketRequest(name=TICKET, reason="a\x00b"), "reason"),
    (pb.HoldTicketRequest(name=TICKET, etag="١"), "etag"),
    (pb.HoldTicketRequest(name=TICKET, request_id="é"), "request_id"),
    (pb.SolveTicketRequest(name="appeals/x", resolution="done"), "name"),
    (pb.SolveTicketRequest(name=TICKET), "resolution"),
    (pb.SolveTicketRequest(name=TICKET, resolution="done", etag="-1"), "etag"),
    (pb.SolveTicketRequest(name=TICKET, resolution="done", request_id="x" * 65), "request_id"),
    (pb.ReopenTicketRequest(name="x"), "name"),
    (pb.ReopenTicketRequest(name=TICKET, reason="x" * 2001), "reason"),
    (pb.ReopenTicketRequest(name=TICKET, etag="v"), "etag"),
    (pb.ReopenTicketRequest(name=TICKET, request_id="a/b"), "request_id"),
    (pb.CloseTicketRequest(name="x"), "name"),
    (pb.CloseTicketRequest(name=TICKET, etag="x"), "etag"),
    (pb.CloseTicketRequest(name=TICKET, request_id="é"), "request_id"),
    (pb.CancelTicketRequest(name="x"), "name"),
    (pb.CancelTicketRequest(name=TICKET, reason="\x1b[31m"), "reason"),
    (pb.CancelTicketRequest(name=TICKET, etag="x"), "etag"),
    (pb.CancelTicketRequest(name=TICKET, request_id="a b"), "request_id"),
    (pb.RateTicketRequest(name="x", score=5), "name"),
    (pb.RateTicketRequest(name=TICKET, score=6), "score"),
    (pb.RateTicketRequest(name=TICKET, score=5, comment="\x7f"), "comment"),
    (pb.RateTicketRequest(name=TICKET, score=5, request_id="a b"), "request_id"),
    (pb.ListTicketEventsRequest(name="x"), "name"),
    (pb.ListTicketEventsRequest(name=TICKET, page_size=-1), "page_size"),
    (apb.FileAppealRequest(request_id="ok"), "appeal"),
    (apb.FileAppealRequest(appeal=apb.Appeal(), request_id=""), "request_id"),
    (apb.GetAppealRequest(name="tickets/x"), "name"),
    (apb.ListAppealsRequest(page_size=-1), "page_size"),
    (apb.ListAppealEventsRequest(name=""), "name"),
    (apb.ListAppealEventsRequest(name="appeals/x", page_size=-1), "page_size"),
    (apb.AddAppealInfoRequest(name=""), "name"),
    (apb.AddAppealInfoRequest(name="appeals/x", etag="v1"), "etag"),
    (apb.AddAppealInfoRequest(name="appeals/x", request_id="a b"), "request_id"),
    (apb.WithdrawAppealRequest(name=""), "name"),
    (apb.WithdrawAppealRequest(name="appeals/x", request_id="a b"), "request_id"),
    (apb.FileCounterNoticeRequest(name=""), "name"),
    (apb.FileCounterNoticeRequest(name="appeals/x", request_id="a b"), "request_id"),
    (apb.AssignAppealRequest(name=""), "name"),
    (apb.AssignAppealRequest(name="appeals/x", request_id="a b"), "request_id"),
    (apb.RequestAppealInfoRequest(name="", message="?"), "name"),
    (apb.RequestAppealInfoRequest(name="appeals/x", message=" "), "message"),
    (apb.RequestAppealInfoRequest(name="appeals/x", message="?", request_id="a b"), "request_id"),
    (apb.RequestAppealInfoRequest(name="appeals/x", message="?", etag="v1"), "etag"),
    (apb.DecideAppealRequest(name=""), "name"),
    (apb.DecideAppealRequest(name="appeals/x"), "outcome"),
    (apb.DecideAppealRequest(name="appeals/x", etag="v1"), "etag"),
    (apb.DecideAppealRequest(reasons=apb.StatementOfReasons(facts="f")), "reasons.ground"),
    (apb.DecideAppealRequest(reasons=apb.StatementOfReasons(ground="g")), "reasons.facts"),
    (
        apb.DecideAppealRequest(
            name="appeals/x", outcome=apb.APPEAL_OUTCOME_UPHOLD, request_id="a b"
        ),
        "request_id",
    ),
    (apb.RecordCourtActionRequest(name="", details="d"), "name"),
    (apb.RecordCourtActionRequest(name="appeals/x", details=""), "details"),
    (apb.RecordCourtActionRequest(name="appeals/x", details="d", request_id="a b"), "request_id"),
    (apb.RecordCourtOutcomeRequest(name="", details="d"), "name"),
    (apb.RecordCourtOutcomeRequest(name="appeals/x", details="d"), "outcome"),
    (apb.RecordCourtOutcomeRequest(name="appeals/x", details=""), "details"),
    (
        apb.RecordCourtOutcomeRequest(
            name="appeals/x",
            outcome=apb.COURT_OUTCOME_CONTENT_RESTORED,
            details="d",
            request_id="a b",
        ),
        "request_id",
    ),
    (rpb.FileReportRequest(request_id="ok"), "report"),
    (rpb.FileReportRequest(report=rpb.Report(), request_id="a b"), "request_id"),
    (rpb.GetReportRequest(name="report-cases/x"), "name"),
    (rpb.ListReportsRequest(page_size=-1), "page_size"),
    (rpb.ListReportEventsRequest(name="report-cases/x"), "name"),
    (rpb.GetReportCaseRequest(name="reports/x"), "name"),
    (rpb.ListReportCasesRequest(page_size=-1), "page_size"),
    (rpb.ListMyReportCasesRequest(page_size=-1), "page_size"),
    (rpb.AssignReportCaseRequest(name=""), "name"),
    (rpb.AssignReportCaseRequest(name="report-cases/x", assignee="a\nb"), "assignee"),
    (rpb.AssignReportCaseRequest(name="report-cases/x", assignee="x" * 129), "assignee"),
    (rpb.AssignReportCaseRequest(name="report-cases/x", request_id="a b"), "request_id"),
    (rpb.DecideReportCaseRequest(name=""), "name"),
    (rpb.DecideReportCaseRequest(name="report-cases/x"), "outcome"),
    (rpb.DecideReportCaseRequest(name="report-cases/x", etag="v1"), "etag"),
    (rpb.DecideReportCaseRequest(statement=rpb.DecisionStatement()), "statement.decision_facts"),
    (
        rpb.DecideReportCaseRequest(
            name="report-cases/x",
            outcome=rpb.REPORT_DECISION_OUTCOME_ACTION_TAKEN,
            request_id="a b",
        ),
        "request_id",
    ),
    (rpb.VoidReportCaseRequest(name="", reason="r"), "name"),
    (rpb.VoidReportCaseRequest(name="report-cases/x", reason=""), "reason"),
    (rpb.VoidReportCaseRequest(name="report-cases/x", reason="x" * 501), "reason"),
    (rpb.VoidReportCaseRequest(name="report-cases/x", reason="r", request_id="a b"), "request_id"),
    (rpb.SetTrustedFlaggerRequest(request_id="a b"), "request_id"),
    (rpb.RemoveTrustedFlaggerRequest(user_id="bob", request_id="a b"), "request_id"),
    (qpb.ListQueueCasesRequest(page_size=-1), "page_size"),
    (qpb.ClaimNextCaseRequest(lease_seconds=5), "lease_seconds"),
    (qpb.ClaimNextCaseRequest(request_id="a b"), "request_id"),
    (qpb.RenewClaimRequest(name=TICKET, lease_seconds=3601), "lease_seconds"),
    (hpb.SearchArticlesRequest(query=""), "query"),
    (hpb.ListMyHelpSessionsRequest(page_size=-1), "page_size"),
    (hpb.ListMyPhoneChangesRequest(page_size=-1), "page_size"),
    (npb.ListMyNotificationsRequest(page_size=-1), "page_size"),
    (hpb.SearchArticlesRequest(query="x", session="help-sessions/x"), "session"),
    (hpb.SearchArticlesRequest(query="x", locale="fr"), "locale"),
    (hpb.SearchArticlesRequest(query="x", page_size=-1), "page_size"),
    (hpb.SuggestArticlesRequest(prefix="x" * 51), "prefix"),
    (hpb.SuggestArticlesRequest(prefix="x", locale="zh"), "locale"),
    (hpb.GetArticleRequest(name="articles/Upper"), "name"),
    (hpb.GetArticleRequest(name=ARTICLE, locale="EN"), "locale"),
    (hpb.GetArticleRequest(name=ARTICLE, session="tickets/x"), "session"),
    (hpb.GetArticleRequest(name=ARTICLE, version=-1), "version"),
    (hpb.ListHelpCategoriesRequest(locale="de"), "locale"),
    (hpb.CreateArticleRequest(), "article"),
    (hpb.CreateArticleRequest(article=hpb.Article(name="articles/-x")), "article.name"),
    (hpb.CreateArticleRequest(article=hpb.Article(locale="fr")), "article.locale"),
    (hpb.CreateArticleRequest(article=hpb.Article(title="a\nb")), "article.title"),
    (hpb.CreateArticleRequest(article=hpb.Article(body=" ")), "article.body"),
    (hpb.UpdateArticleRequest(), "article"),
    (hpb.UpdateArticleRequest(article=hpb.Article(keywords="k" * 1001)), "article.keywords"),
    (hpb.UpdateArticleRequest(base_version=0), "base_version"),
    (hpb.CreateArticleRequest(request_id="a b"), "request_id"),
    (hpb.UpdateArticleRequest(base_version=1, request_id="a b"), "request_id"),
    (hpb.PublishArticleRequest(name="articles/x"), "name"),
    (hpb.PublishArticleRequest(name=ARTICLE, locale="fr"), "locale"),
    (hpb.PublishArticleRequest(name=ARTICLE, version=-2), "version"),
    (hpb.ListArticleVersionsRequest(name="faq"), "name"),
    (hpb.ListArticleVersionsRequest(name=ARTICLE, locale="fr"), "locale"),
    (hpb.ListFlowsRequest(locale="fr"), "locale"),
    (hpb.StartFlowRequest(flow="flows/login", locale="fr"), "locale"),
    (hpb.StartFlowRequest(flow="flows/login", session="help-sessions/1"), "session"),
    (hpb.AnswerFlowRequest(session=""), "session"),
    (
        hpb.AnswerFlowRequest(
            session="help-sessions/0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10", request_id="a b"
        ),
        "request_id",
    ),
    (hpb.ResolveHelpRequest(session="help-sessions/x", solved=True), "session"),
    (hpb.StartPhoneChangeRequest(old_phone=PHONE, request_id="x", locale="fr"), "locale"),
    (hpb.StartPhoneChangeRequest(old_phone=PHONE, new_phone=PHONE), "request_id"),
    (hpb.ConfirmPhoneChangeRequest(name="phone-changes/x", code="123456"), "name"),
    (hpb.ConfirmPhoneChangeRequest(name=PHONE_CHANGE, code="１２３４５"), "code"),
    (hpb.ResendPhoneChangeCodeRequest(name="tickets/x"), "name"),
    (hpb.ResendPhoneChangeCodeRequest(name=PHONE_CHANGE, request_id="a b"), "request_id"),
    (hpb.GetPhoneChangeRequest(name=""), "name"),
    (hpb.RecommendArticlesRequest(locale="fr"), "locale"),
    (hpb.RecommendArticlesRequest(session="help-sessions/"), "session"),
    (
        epb.UploadEvidenceRequest(metadata=epb.EvidenceMetadata(file_name="  ")),
        "metadata.file_name",
    ),
    (epb.GetEvidenceRequest(name="evidence/not-a-uuid"), "name"),
    (epb.ReadEvidenceRequest(name=""), "name"),
    (epb.ListEvidenceRequest(page_size=-1), "page_size"),
    (ppb.ErasePersonRequest(person=" ", reason="r", request_id="ok"), "person"),
    (ppb.ErasePersonRequest(person="p", reason="one\ntwo", request_id="ok"), "reason"),
    (ppb.ErasePersonRequest(person="p", reason="r", request_id="a b"), "request_id"),
    (ppb.ExportPersonRequest(person="zoe\nyan"), "person"),
    (ppb.ExportPersonRequest(person="z" * 129), "person"),
    (ppb.ErasePersonRequest(person="z" * 129, reason="r", request_id="ok"), "person"),
]

# A CreateTicket wrong in every field, and what the gateway answered for it
# before the rules were written in the protos (hand-written checks).
BAD_TICKET = pb.CreateTicketRequest(
    request_id="no spaces allowed",
    ticket=pb.Ticket(
        category="account.nope",
        subject="line one\nline two",
        description="   ",
        locale="fr",
        contact=pb.Contact(
            email="not-an-address", phone="12345", channels=[pb.CHANNEL_EMAIL, pb.CHANNEL_EMAIL]
        ),
    ),
)
BAD_TICKET_VIOLATIONS = [
    ("request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'"),
    ("ticket.category", "unknown category 'account.nope'; see ListTicketCategories"),
    ("ticket.subject", "must not contain control characters or line breaks"),
    ("ticket.description", "must not be empty"),
    ("ticket.locale", "must be one of zh-CN, en"),
    ("ticket.contact.channels", "must not repeat a channel"),
    ("ticket.contact.email", "is not an e-mail address"),
    (
        "ticket.contact.phone",
        # No SMS chosen: any valid number would do.
        "is not a valid phone number; expected a number such as 13800138000 or 010 1234 5678"
        " (outside mainland China: +44 20 7946 0018)",
    ),
]


def annotated_fields() -> set[str]:
    """Every field of casemesh.v1 with field rules (`Message.field`), but those
    whose rules are switched off (`IGNORE_ALWAYS`: output only)."""
    found = set()
    for module in PUBLIC:
        for message in module.DESCRIPTOR.message_types_by_name.values():
            for field in message.fields:
                rules = _rules(field)
                if rules is not None and rules.ignore != validate_pb2.IGNORE_ALWAYS:
                    found.add(f"{message.name}.{field.name}")
    return found


def field_of(request: Message, path: str) -> str:
    """`Message.field` for the field a path names in a request."""
    descriptor: Any = request.DESCRIPTOR
    *parents, last = path.split(".")
    for part in parents:
        descriptor = descriptor.fields_by_name[part].message_type
    return f"{descriptor.name}.{last}"


def _rules(field: FieldDescriptor) -> Any:
    options = field.GetOptions()
    if not options.HasExtension(validate_pb2.field):
        return None
    return options.Extensions[validate_pb2.field]
