"""Abuse reports: from a user's report to a reasoned decision and feedback."""
