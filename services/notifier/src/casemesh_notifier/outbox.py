"""The notifier's outcome events (`casemesh.notifications.v1`), published from
its outbox table by the shared publisher."""

from __future__ import annotations

from casemesh import topics
from casemesh.events.v1 import notifications_pb2 as nev
from casemesh.platform.outbox import Outbox

TOPIC = topics.NOTIFICATIONS
SOURCE = "casemesh/notifier"
NOTIFICATIONS = Outbox(
    table="notification_outbox",
    topic=TOPIC,
    source=SOURCE,
    subject_column="job_id",
    subject_prefix="notifications/",
    messages=(nev.NotificationDelivered, nev.NotificationAttemptFailed, nev.NotificationParked),
)
