"""Casemesh gateway: the only public gRPC endpoint (authentication,
authorisation, validation, rate limits, routing to the services)."""
