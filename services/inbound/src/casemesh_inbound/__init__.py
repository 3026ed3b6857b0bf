"""The inbound mail service: requesters\x27 replies to ticket e-mails become comments."""
