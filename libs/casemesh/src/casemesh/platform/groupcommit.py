"""Group commit for the event store: the commands that reach the database
together share one transaction and one flush to disk.

The library's recorder makes each command one transaction that locks the
events table through its commit (so that notification ids become visible in
the order they were given, which the relay relies on): every command waits
for every other command's fsync. Here a caller that finds no write under way
writes everything queued by then in one transaction, under the same lock:

- one statement for the whole batch, calling a function in the database
  (lock, NOTIFY, inserts, commit: one round trip); a caller whose events
  were not all inserted (another command stored that version first, or a
  batch-mate did) stores nothing: its other events are deleted again before
  the commit. It is then written again alone, so it is refused with
  `IntegrityError` only for what is stored, never for a batch-mate that
  was refused too (one that took its version, then lost another);
- any other error fails the batch only as a whole: each caller is then
  written alone, so a bad command fails by itself;
- each caller returns only once the transaction holding its events has
  committed; then the next caller in the queue leads the next batch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from prometheus_client import Histogram
from psycopg.errors import ReadOnlySqlTransaction
from psycopg.sql import SQL, Identifier

from casemesh.platform import columns, schema
from casemesh.platform.pools import DATABASE_OUTAGE, DatabaseUnavailable

# Events written in one transaction at the most (the rest wait for the next).
MAX_BATCH_EVENTS = 1000

BATCH_COMMANDS = Histogram(
    "casemesh_event_store_batch_commands",
    "Commands written together in one event-store transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)


class _Write:
    """One caller's events, waiting for a batch."""

    def __init__(self, events: Sequence[StoredEvent]) -> None:
        self.events = events
        # Held until the caller is woken (a bare lock: the cheapest wake-up).
        self._asleep = threading.Lock()
        self._asleep.acquire()
        self.lead = False  # woken to write the next batch
        self.done = False
        self.ids: list[int] = []
        self.error: BaseException | None = None

    def wait(self) -> None:
        """Until woken: to lead a batch, or with the outcome."""
        self._asleep.acquire()

    def wake(self) -> None:
        """Each wake is taken by one `wait` before the next is given: to lead
        at most once while queued (when the write before has finished), then
        once with the outcome."""
        self._asleep.release()

    def finish(self, ids: list[int] | None = None, error: BaseException | None = None) -> None:
        self.ids = ids or []
        self.error = error
        self.done = True
        self.wake()


class GroupCommitRecorder(PostgresApplicationRecorder):
    """The application recorder the writer services use (see the module
    docstring); chosen by `postgres_env` through `APPLICATION_RECORDER_TOPIC`."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self._queue: list[_Write] = []
        self._mutex = threading.Lock()
        self._writing = False
        names = {
            "schema": Identifier(datastore.schema),
            "table": Identifier(self.events_table_name),
            "channel": Identifier(self.channel_name),
            "append": Identifier(f"casemesh_append_{self.events_table_name}"[:63]),
        }
        self.sql_create_statements.append(
            APPEND_FUNCTION.format(**names, lock_timeout=datastore.lock_timeout)
        )
        self._append = SQL(
            "SELECT {schema}.{append}(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[], %b::int[])"
            " AS ids"
        ).format(**names)

    def create_table(self) -> None:
        # Only when its statements changed (`casemesh.platform.schema`).
        schema.create_table(self, super().create_table)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int]:
        if not stored_events:
            return []
        if any(v is not None for v in kwargs.values()):
            # The library's application recorder would drop it without a word.
            raise NotImplementedError("a tracking record cannot be stored with the events here")
        write = _Write(stored_events)
        with self._mutex:
            self._queue.append(write)
            lead = not self._writing
            self._writing = True
        if lead:
            self._lead()
        while not write.done:
            try:
                write.wait()
            except BaseException:
                self._abandon(write)
                raise
            if write.lead and not write.done:
                self._lead()
        if write.error is not None:
            raise write.error
        return write.ids

    def _lead(self) -> None:
        """Writes one batch from the head of the queue, then hands the lead
        to the next caller waiting (or ends the writing)."""
        batch = self._take_batch()
        BATCH_COMMANDS.observe(len(batch))
        try:
            self._write_together(batch)
        except DATABASE_OUTAGE as exc:  # nobody's own fault: each caller is told at once
            for write in batch:
                write.finish(error=exc)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].finish(error=exc)
            else:  # so that a bad command fails by itself
                for write in batch:
                    try:
                        self._write_together([write])
                    except Exception as alone:
                        write.finish(error=alone)
        finally:
            for write in batch:  # only if interrupted: no caller may wait for ever
                if not write.done:
                    write.finish(
                        error=RuntimeError("the write was interrupted; its outcome is unknown")
                    )
            with self._mutex:
                self._pass_lead()

    def _pass_lead(self) -> None:
        """To the caller at the head of the queue, if any (holding the mutex)."""
        if self._queue:
            self._queue[0].lead = True
            self._queue[0].wake()
        else:
            self._writing = False

    def _abandon(self, write: _Write) -> None:
        """A caller that stopped waiting (interrupted) leaves the queue, and
        hands on the lead if it had just been handed it."""
        with self._mutex:
            if write in self._queue:
                was_leading = write.lead and self._queue[0] is write
                self._queue.remove(write)
                if was_leading:
                    self._pass_lead()

    def _take_batch(self) -> list[_Write]:
        with self._mutex:
            batch = [self._queue.pop(0)]
            count = len(batch[0].events)
            while self._queue and count + len(self._queue[0].events) <= MAX_BATCH_EVENTS:
                count += len(self._queue[0].events)
                batch.append(self._queue.pop(0))
            return batch

    def _write_together(self, batch: list[_Write]) -> None:
        """One statement, so one transaction and one round trip, for the
        batch; each caller's outcome is set only once it has committed (an
        exception leaves every outcome unset). A caller refused beside
        others is written again alone (one more round trip, on a conflict
        only)."""
        events = [e for write in batch for e in write.events]
        with self.datastore.get_connection() as conn:
            encoding = conn.info.encoding  # text goes in binary form as the connection's
            values = (
                columns.uuids(e.originator_id for e in events),
                columns.bigints(e.originator_version for e in events),
                columns.texts((e.topic for e in events), encoding),
                columns.byteas(e.state for e in events),
                columns.ints(n for n, write in enumerate(batch) for _ in write.events),
            )
            try:
                result = conn.execute(self._append, values, prepare=True).fetchone()
            except ReadOnlySqlTransaction as exc:
                # A primary just demoted in a failover: an outage to the
                # callers (UNAVAILABLE, retry), and the connection, still on
                # it, not given to the next batch.
                conn.close()
                raise DatabaseUnavailable("the database only reads (a failover)") from exc
        assert result is not None
        ids: list[int | None] = result["ids"]
        start, refused = 0, []
        for write in batch:
            mine = ids[start : start + len(write.events)]
            start += len(write.events)
            if None in mine:  # it lost a race: the function kept none of its events
                refused.append(write)
            else:
                write.finish(ids=[i for i in mine if i is not None])
        if len(batch) == 1:
            for write in refused:
                write.finish(
                    error=IntegrityError("an event of this aggregate version is already stored")
                )
            return
        # Refused beside batch-mates, a caller may have lost its version to
        # one that was itself refused (and kept none of its events): each is
        # written again alone, in order, and refused only for what is stored.
        for write in refused:
            try:
                self._write_together([write])
            except Exception as exc:
                write.finish(error=exc)


# Appends a batch under the table lock, in the transaction of the one
# statement that calls it. The events come as one array a column, in order;
# they are inserted in that order by one INSERT (so notification ids follow
# it), each unless its aggregate version is already stored (by an earlier
# transaction or an earlier batch-mate). Only for those that were not (rare)
# is each looked at alone: as this very event (same topic and state: an
# earlier try whose answer was lost), it counts as stored; as another, it is
# refused, and its caller gets none of its events stored. Returns each
# event's notification id, NULL for those not stored.
APPEND_FUNCTION = SQL(
    "CREATE OR REPLACE FUNCTION {schema}.{append}("
    "   originators uuid[], versions bigint[], topics text[], states bytea[], callers int[]"
    " ) RETURNS bigint[] LANGUAGE plpgsql AS $BODY$"
    " DECLARE"
    "   n int := coalesce(array_length(callers, 1), 0);"
    "   ids bigint[];"
    "   fresh boolean[];"
    "   inserted bigint[];"
    "   refused int[] := '{{}}';"
    "   id bigint;"
    " BEGIN"
    "   SET LOCAL lock_timeout = '{lock_timeout}s';"
    "   LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
    "   NOTIFY {channel};"
    "   WITH batch AS ("
    "     SELECT * FROM unnest(originators, versions, topics, states)"
    "       WITH ORDINALITY AS b(originator_id, originator_version, topic, state, i)"
    "   ), stored AS ("
    "     INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
    "     SELECT originator_id, originator_version, topic, state FROM batch ORDER BY i"
    "     ON CONFLICT DO NOTHING"
    "     RETURNING originator_id, originator_version, notification_id"
    "   ), firsts AS ("
    # Of batch-mates with one aggregate version, only the first can be stored.
    "     SELECT DISTINCT ON (originator_id, originator_version) i, originator_id,"
    "            originator_version"
    "     FROM batch ORDER BY originator_id, originator_version, i"
    "   )"
    "   SELECT array_agg(s.notification_id ORDER BY b.i) INTO ids"
    "   FROM batch b LEFT JOIN firsts f ON f.i = b.i"
    "   LEFT JOIN stored s ON s.originator_id = f.originator_id"
    "     AND s.originator_version = f.originator_version;"
    "   IF array_position(ids, NULL) IS NULL THEN"
    "     RETURN ids;"
    "   END IF;"
    "   fresh := array_fill(false, ARRAY[n]);"
    "   inserted := array_remove(ids, NULL);"
    "   FOR i IN 1..n LOOP"
    "     IF ids[i] IS NOT NULL THEN"
    "       fresh[i] := true;"
    "     ELSE"
    # The very event, stored by an earlier try whose answer was lost: its own.
    # Not a row a batch-mate inserted here: that one may yet be deleted (its
    # caller refused), and this caller is then written again alone.
    "       SELECT notification_id INTO id FROM {schema}.{table}"
    "       WHERE originator_id = originators[i] AND originator_version = versions[i]"
    "         AND topic = topics[i] AND state = states[i]"
    "         AND NOT notification_id = ANY(inserted);"
    "       ids[i] := id;"
    "       IF id IS NULL THEN refused := refused || callers[i]; END IF;"
    "     END IF;"
    "   END LOOP;"
    "   FOR i IN 1..n LOOP"
    "     IF callers[i] = ANY(refused) THEN"
    "       IF fresh[i] THEN"
    "         DELETE FROM {schema}.{table} WHERE notification_id = ids[i];"
    "       END IF;"
    "       ids[i] := NULL;"
    "     END IF;"
    "   END LOOP;"
    "   RETURN ids;"
    " END;"
    " $BODY$"
)
