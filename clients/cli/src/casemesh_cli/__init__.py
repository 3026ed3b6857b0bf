"""Casemesh's command-line client for people (``casemesh``): a client of the
gateway's public gRPC API, nothing more. The ticket commands and the entry point
live in :mod:`.__main__`; evidence in :mod:`.evidence`, copyright cases in
:mod:`.appeals`, abuse reports in :mod:`.reports` and the agents' queue in
:mod:`.queue`; how it connects and with which token in :mod:`.connection`."""
