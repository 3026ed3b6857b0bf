"""Plumbing shared by every Casemesh service."""
