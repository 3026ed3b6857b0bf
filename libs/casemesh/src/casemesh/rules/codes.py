"""How long a one-time code (a phone change's) holds: the help centre
issues each for this long (`VerificationCodeIssued.expire_time` is this after
the code was issued), and the notifier reckons when a code was issued from
its expiry by it."""

from __future__ import annotations

from datetime import timedelta

CODE_LIFE = timedelta(minutes=10)
