"""Casemesh's command-line client for people (``casemesh``): a client of the
gateway's public gRPC API, nothing more; the commands live in :mod:`.__main__`,
with the abuse-report ones in :mod:`.reports` and the agents' queue in :mod:`.queue`."""
