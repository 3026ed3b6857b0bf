"""Casemesh notifier: turns case events into e-mail and SMS, never losing one
and never sending one twice."""
