"""Casemesh shared library.

`casemesh.platform` is the plumbing every service shares (settings, logging,
telemetry, identity, errors, gRPC serving, the event relay, idempotent
consumers). `casemesh.v1` and `casemesh.events.v1` are generated from `proto/`
by `just proto` and are never edited by hand.
"""
