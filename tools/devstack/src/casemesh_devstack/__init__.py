"""Casemesh's local stack: a throwaway PostgreSQL cluster (:mod:`.postgres`), a
single-node Kafka broker in KRaft mode (:mod:`.kafka`), local e-mail and SMS sinks
(:mod:`.sinks`), a process supervisor for the services (:mod:`.supervisor`) and
the ``casemesh-dev`` command that wires them together (:mod:`.stack`)."""
