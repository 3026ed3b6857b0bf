"""The agents' case queue: every open case, ordered by urgency, with SLA clocks."""
