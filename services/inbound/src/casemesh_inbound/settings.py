"""Settings of the inbound mail service (environment variables CASEMESH_*)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network

from pydantic import Field, SecretStr, model_validator

from casemesh.platform.settings import HOST_PORT, VouchingSettings


class InboundSettings(VouchingSettings):
    service_name: str = "inbound"
    # Where the SMTP server listens (port 25 of the MX host reaches it).
    smtp_addr: str = Field("127.0.0.1:2526", pattern=HOST_PORT)
    # The domain of the reply addresses (reply+<ticket>.<mac>@<domain>);
    # mail to any other domain is refused.
    reply_domain: str = Field("reply.casemesh.local", min_length=1)
    # The secret reply addresses are made with, and the one before it while
    # it rotates (addresses sent out with the old one still answer).
    reply_token_secret: SecretStr
    reply_token_old_secret: SecretStr = SecretStr("")
    # A certificate (chain) and its key, PEM files: with both, STARTTLS is
    # offered (sending servers use it when offered; it is not required, as
    # RFC 3207 asks of a server the public reaches). Without, none is offered.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # The authserv-id the mail server in front writes in Authentication-Results
    # (RFC 8601): set, a reply is taken only when that server vouches for its
    # From domain (DMARC, or DKIM or SPF of that domain: `authres`); "": the
    # From address is taken as it is.
    trusted_authserv_id: str = ""
    # The addresses of that mail server (comma-separated networks, e.g.
    # `10.20.0.0/16,192.0.2.25/32`): mail from any other is refused at RCPT
    # TO, so that nobody connecting directly writes the headers it writes.
    # Required with `trusted_authserv_id`; "": mail from anywhere.
    trusted_relays: str = ""
    # A larger message is refused at DATA (552): 25 MiB, as mail providers do.
    max_message_bytes: int = Field(25 * 1024 * 1024, gt=0)
    # The bytes of messages held at once, from their data to their answer
    # (each counted at the size the trusted mail server declares, else at the
    # largest): one that would go over is answered 451 4.3.1 before its data
    # is sent, and its sender tries again later. Two of the largest by
    # default; the pod's memory limit is sized for it (deploy/k8s/base/inbound.yaml).
    message_budget_bytes: int = Field(50 * 1024 * 1024, gt=0)
    # The services' gRPC targets, host:port or dns:///host:port.
    tickets_target: str = Field("127.0.0.1:50061", pattern=HOST_PORT)
    evidence_target: str = Field("127.0.0.1:50062", pattern=HOST_PORT)
    backend_timeout_seconds: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _relays_named_with_the_server(self) -> InboundSettings:
        self.relay_networks()  # each one a network
        if self.trusted_authserv_id and not self.trusted_relays.strip():
            raise ValueError(
                "CASEMESH_TRUSTED_RELAYS names the addresses of the mail server whose"
                " Authentication-Results CASEMESH_TRUSTED_AUTHSERV_ID trusts: without it,"
                " anyone connecting directly could write them"
            )
        return self

    def relay_networks(self) -> list[IPv4Network | IPv6Network] | None:
        """The networks mail is taken from; None: from anywhere."""
        named = [n.strip() for n in self.trusted_relays.split(",") if n.strip()]
        try:
            return [ip_network(n, strict=False) for n in named] if named else None
        except ValueError as exc:
            raise ValueError(f"CASEMESH_TRUSTED_RELAYS: {exc}") from None

    @model_validator(mode="after")
    def _largest_message_fits_the_budget(self) -> InboundSettings:
        if self.message_budget_bytes < self.max_message_bytes:
            raise ValueError(
                "CASEMESH_MESSAGE_BUDGET_BYTES must be at least CASEMESH_MAX_MESSAGE_BYTES:"
                " a message larger than the budget would be put off at every try, then bounced"
            )
        return self

    @model_validator(mode="after")
    def _tls_cert_and_key_together(self) -> InboundSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError(
                "CASEMESH_TLS_CERT_FILE and CASEMESH_TLS_KEY_FILE are set together or not at all"
            )
        return self

    def reply_secrets(self) -> list[str]:
        return [
            s.get_secret_value()
            for s in (self.reply_token_secret, self.reply_token_old_secret)
            if s.get_secret_value()
        ]
