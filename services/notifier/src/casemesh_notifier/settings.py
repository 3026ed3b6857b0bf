"""Settings of the notifier (environment variables CASEMESH_*)."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator

from casemesh.platform.personal import PersonalDataSettings
from casemesh.platform.settings import InternalServiceSettings, KafkaSettings, PostgresSettings
from casemesh_notifier import mime

# Time a claim lease keeps, after the longest send, for recording its outcome
# (delivery.RECORD_MARGIN_S).
RECORD_MARGIN_S = 30.0


# The key database is required: ticket events carry the requester's contacts
# and words sealed, and a notifier that could not reveal them could not write.
class NotifierSettings(PostgresSettings, KafkaSettings, PersonalDataSettings):
    service_name: str = "notifier"
    consumer_group: str = "casemesh-notifier"

    # E-mail: SMTP (operators point these at their own relay), or a provider's
    # HTTP API, which honours an idempotency key (a resent job delivered once).
    # The API wins when both are set.
    smtp_host: str = ""
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_timeout_seconds: float = Field(10.0, gt=0)
    # How long the relay may take to answer a whole message (RFC 5321 allows
    # minutes); one that never answers may have delivered it, and its retry
    # is marked as a possible repeat.
    smtp_data_timeout_seconds: float = Field(120.0, gt=0)
    # Replies by e-mail: ticket e-mails carry Reply-To: reply+<ticket>.<mac>@<domain>,
    # which the inbound mail service turns into a comment. The same domain and
    # secret as the inbound service's; none when either is empty.
    reply_domain: str = ""
    reply_token_secret: SecretStr = SecretStr("")

    @property
    def replies_open(self) -> bool:
        """Whether ticket e-mails can be answered by e-mail (both are set)."""
        return bool(self.reply_domain and self.reply_token_secret.get_secret_value())

    mail_from: str = "Casemesh Support <support@casemesh.local>"
    email_api_url: str = ""
    email_api_key: str = ""
    email_api_timeout_seconds: float = Field(10.0, gt=0)

    # The time zone dates are written in for a reader whose phone number tells
    # none, nor their case (a copyright case's jurisdiction does): the events
    # carry no zone of the reader's choosing.
    time_zone: str = "Asia/Shanghai"

    # SMS through an HTTP provider API.
    sms_url: str
    sms_api_key: str = ""
    sms_timeout_seconds: float = Field(10.0, gt=0)
    # Quiet hours in the recipient's time zone, "HH:MM-HH:MM"; empty = none.
    sms_quiet_hours: str = "22:00-08:00"
    sms_time_zone: str = "Asia/Shanghai"
    sms_per_recipient_per_hour: int = Field(10, ge=1)

    # How many workers of one notifier send at once, each a batch of jobs
    # (delivery.BATCH). A kill -9 can leave this many batches claimed; each of
    # their jobs is taken over as a possible repeat.
    send_concurrency: int = Field(4, ge=1, le=32)

    # Retries: exponential backoff with full jitter, then the job is parked.
    # 16 attempts at these pauses span 54–107 minutes of a failing provider
    # (a relay or provider that cannot be reached is waited for without end).
    max_attempts: int = Field(16, ge=1)
    backoff_base_seconds: float = Field(2.0, gt=0)
    backoff_cap_seconds: float = Field(900.0, gt=0)
    # A job claimed by a sender that died is retried after this long. It must
    # outlast any send (an SMTP timeout applies to each step of a session)
    # and the recording of its outcome.
    claim_lease_seconds: float = Field(300.0, gt=0)

    @property
    def longest_send(self) -> float:
        """The longest one send may take (seconds), whatever the channel."""
        return max(
            10 * self.smtp_timeout_seconds + self.smtp_data_timeout_seconds,
            10 * max(self.sms_timeout_seconds, self.email_api_timeout_seconds),
        )

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotifierSettings:
        # A shorter lease could lapse before a send that took its full course
        # is recorded: another sender would take the job over and send again.
        least = self.longest_send + RECORD_MARGIN_S
        if self.claim_lease_seconds < least:
            raise ValueError(
                f"CASEMESH_CLAIM_LEASE_SECONDS must be at least {least:.0f} (ten times the "
                "longest channel timeout, plus CASEMESH_SMTP_DATA_TIMEOUT_SECONDS, plus "
                f"{RECORD_MARGIN_S:.0f} s to record the outcome), or a slow send could be "
                "taken over and sent twice"
            )
        return self

    @model_validator(mode="after")
    def _some_way_to_send_email(self) -> NotifierSettings:
        if not self.smtp_host and not self.email_api_url:
            raise ValueError("set CASEMESH_SMTP_HOST or CASEMESH_EMAIL_API_URL")
        return self

    @field_validator("sms_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL")
        return v

    @field_validator("mail_from")
    @classmethod
    def _mailbox(cls, v: str) -> str:
        # The production overlay's placeholder, also half replaced
        # (`support@CHANGE-ME` reads as a mailbox): a relay would refuse every
        # e-mail from it, so the notifier stops at start instead.
        if "CHANGE-ME" in v:
            raise ValueError(
                f"{v!r} is a placeholder: set the sender of every e-mail, on a domain"
                " whose SPF and DMARC let the relay send for it"
            )
        mime.mailbox(v)
        return v

    @field_validator("email_api_url")
    @classmethod
    def _optional_http_url(cls, v: str) -> str:
        return cls._http_url(v) if v else v

    @field_validator("time_zone", "sms_time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValueError(f"{v!r} is not a time zone (e.g. Asia/Shanghai)") from None
        return v

    @field_validator("sms_quiet_hours")
    @classmethod
    def _quiet_hours(cls, v: str) -> str:
        if v and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError("must be HH:MM-HH:MM or empty")
        return v


class NotifierServiceSettings(NotifierSettings, InternalServiceSettings):
    """The notifier as `python -m casemesh_notifier` runs it: also serving
    `NotificationService` (a person's messages) to the gateway alone."""

    grpc_addr: str = "127.0.0.1:50068"
