"""Casemesh tickets service: the Ticket aggregate (general support cases)."""
