"""Personal data sealed per person (crypto-shredding), on the in-memory key
store: what a consumer reveals, what an erasure leaves, what a master key
rotation keeps readable, and what is refused."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Collection, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from casemesh.platform.errors import Aborted
from casemesh.platform.personal import (
    ERASED,
    UNREADABLE,
    AsyncSealer,
    DataKeys,
    Disclosure,
    MasterKeys,
    MemoryKeyStore,
    PersonalDataError,
    PersonalDataSettings,
    PersonalEvent,
    PersonalFields,
    Sealer,
    TokenRefused,
    UnknownDataKey,
    UnknownMasterKey,
    WrappedKeyRefused,
    case_key_of,
    is_erased,
    is_token,
    randomness,
)
from casemesh.platform.personal import __main__ as personal_command
from casemesh.platform.personal.keys import NAMED, WrappedKey
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh.platform.personal.sealing import _parse, _seal
from casemesh.platform.settings import load

ALICE = "users/alice"
BOB = "users/bob"


def masters(*ids: str, keys: dict[str, str] | None = None) -> MasterKeys:
    keys = keys if keys is not None else {}
    return MasterKeys.parse(",".join(f"{i}:{keys.setdefault(i, new_master_key())}" for i in ids))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore(MemoryKeyStore):
    """Remembers how many keys each look-up asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[int] = []
        self.batches: list[int] = []

    def add_case_keys(self, keys: Collection[WrappedKey]) -> None:
        self.batches.append(len(keys))
        super().add_case_keys(keys)

    def find(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, WrappedKey | None]:
        self.lookups.append(len(key_ids))
        return super().find(key_ids)


def sealer(store: MemoryKeyStore | None = None, master_keys: MasterKeys | None = None) -> Sealer:
    return Sealer(DataKeys(store or MemoryKeyStore(), master_keys or masters("m1")))


def test_sealed_text_reveals_as_written_and_carries_none_of_it() -> None:
    personal = sealer()
    token = personal.seal("alice@example.com", ALICE)
    assert token.startswith("pd1.") and token.isascii()
    assert "alice" not in token and "example" not in token
    assert is_token(token)
    assert personal.reveal(token) == "alice@example.com"
    assert personal.look(token).disclosure is Disclosure.REVEALED


def test_unicode_text_survives_the_round_trip() -> None:
    personal = sealer()
    said = "我的视频被误删了 — très fâché 😠, call +86 138 0013 8000"
    assert personal.reveal(personal.seal(said, ALICE)) == said


def test_the_same_text_sealed_twice_gives_two_tokens() -> None:
    personal = sealer()
    assert personal.seal("13800138000", ALICE) != personal.seal("13800138000", ALICE)


def test_no_two_tokens_share_a_nonce_however_many_threads_seal() -> None:
    # Nonces are slices of blocks of the system's randomness; a slice handed
    # out twice would be the same nonce under the same key.
    personal = sealer()
    personal.seal("warm", ALICE)
    tokens: list[list[str]] = [[] for _ in range(4)]

    def seal_many(mine: list[str]) -> None:
        mine.extend(personal.seal("13800138000", ALICE) for _ in range(1_000))

    threads = [threading.Thread(target=seal_many, args=(mine,)) for mine in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    nonces = {_parse(t).nonce for mine in tokens for t in mine}  # type: ignore[union-attr]
    assert len(nonces) == 4_000


def test_a_forked_child_takes_none_of_its_parents_random_bytes() -> None:
    randomness.take(12)  # the parent's block read, most of it not yet handed out
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(writing, randomness.take(12))
        os._exit(0)
    os.close(writing)
    os.waitpid(child, 0)
    childs = os.read(reading, 12)
    os.close(reading)
    assert len(childs) == 12
    assert childs != randomness.take(12)


def test_empty_text_stays_empty() -> None:
    personal = sealer()
    assert personal.seal("", ALICE) == ""
    assert personal.reveal("") == ""


def test_text_from_before_sealing_reads_as_it_was() -> None:
    personal = sealer()
    for old in ["bob@example.com", "pd1.", "pd1.not a token", "pd1.c2hvcnQ"]:
        assert personal.reveal(old) == old
        assert personal.look(old).disclosure is Disclosure.PLAIN


def test_after_an_erasure_the_persons_text_reads_as_erased_and_others_are_untouched() -> None:
    personal = sealer()
    alices = [
        personal.seal("alice@example.com", ALICE),
        personal.seal("I was charged twice", ALICE),
    ]
    bobs = personal.seal("bob@example.com", BOB)

    assert personal.keys.erase(ALICE) == 1

    for token in alices:
        assert personal.reveal(token) == ERASED
        assert is_erased(personal.reveal(token))
        assert personal.look(token).erased
    assert personal.reveal(bobs) == "bob@example.com"
    # Erasing again finds nothing left, and says so.
    assert personal.keys.erase(ALICE) == 0


def test_after_an_erasure_new_data_gets_a_new_key_and_the_old_stays_erased() -> None:
    personal = sealer()
    before = personal.seal("old@example.com", ALICE)
    personal.keys.erase(ALICE)
    after = personal.seal("new@example.com", ALICE)
    assert personal.reveal(after) == "new@example.com"
    assert personal.reveal(before) == ERASED


def test_a_token_is_refused_as_another_persons() -> None:
    personal = sealer()
    token = personal.seal("alice@example.com", ALICE)
    personal.seal("bob@example.com", BOB)
    assert personal.reveal(token, ALICE) == "alice@example.com"
    with pytest.raises(TokenRefused, match="belongs to someone else"):
        personal.reveal(token, BOB)


def test_a_token_moved_under_another_persons_key_is_refused() -> None:
    personal = sealer()
    alices = base64.urlsafe_b64decode(personal.seal("alice@example.com", ALICE)[4:] + "==")
    bobs = base64.urlsafe_b64decode(personal.seal("bob@example.com", BOB)[4:] + "==")
    # Alice's ciphertext presented with Bob's key id.
    moved = "pd1." + base64.urlsafe_b64encode(bobs[:16] + alices[16:]).decode().rstrip("=")
    with pytest.raises(TokenRefused, match="altered"):
        personal.reveal(moved)


def test_an_altered_token_is_refused_not_revealed_as_something_else() -> None:
    personal = sealer()
    token = personal.seal("alice@example.com", ALICE)
    # A character inside the ciphertext (the last one may carry unused bits).
    at = len(token) - 10
    altered = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
    with pytest.raises(TokenRefused, match="altered"):
        personal.reveal(altered)


def test_many_tokens_are_revealed_with_one_key_look_up() -> None:
    store = CountingStore()
    writer = sealer(store)
    tokens = [writer.seal(f"comment {n}", f"users/{n % 3}") for n in range(9)]
    writer.keys.erase("users/2")

    reader = sealer(store, writer.keys.masters)
    revealed = reader.reveal_many([*tokens, "plain text"])

    assert store.lookups == [3]  # three people's keys, one of them erased
    assert revealed["plain text"] == "plain text"
    for n, token in enumerate(tokens):
        assert revealed[token] == (ERASED if n % 3 == 2 else f"comment {n}")
    # Known now, erased ones too: no further look-up.
    reader.reveal_many(tokens)
    assert store.lookups == [3]


def test_after_a_master_key_rotation_and_rewrap_the_old_master_key_can_go() -> None:
    store = MemoryKeyStore()
    secrets: dict[str, str] = {}
    before = sealer(store, masters("old", keys=secrets))
    tokens = {p: before.seal(f"{p} wrote this", p) for p in (ALICE, BOB)}

    # The secret now names a new current key, the old one after it.
    rotating = DataKeys(store, masters("new", "old", keys=secrets))
    done = rotating.rewrap()
    assert (done.moved, done.left) == (2, 0)
    assert rotating.rewrap().moved == 0

    after = Sealer(DataKeys(store, masters("new", keys=secrets)))
    for person, token in tokens.items():
        assert after.reveal(token) == f"{person} wrote this"


def test_a_rewrap_reads_each_key_once_and_goes_past_one_it_cannot_move() -> None:
    """A pass over the key table goes on from where its last batch ended:
    it reads each key once (from the start each time, a table of millions
    would be read over and over), and a key whose wrapping changed meanwhile
    (another process wrapped it) does not hold it at that key for ever. The
    count after the pass reads only the key left, and names it."""

    class Recording(MemoryKeyStore):
        def __init__(self) -> None:
            super().__init__()
            self.read: list[uuid.UUID] = []

        def wrapped_by_other_than(
            self, master_id: str, limit: int, after: uuid.UUID | None = None
        ) -> list[WrappedKey]:
            found = super().wrapped_by_other_than(master_id, limit, after)
            self.read.extend(k.key_id for k in found)
            return found

        def replace_wrapping(self, old: WrappedKey, master_id: str, wrapped: bytes) -> bool:
            return old.person != BOB and super().replace_wrapping(old, master_id, wrapped)

    store = Recording()
    secrets: dict[str, str] = {}
    before = sealer(store, masters("old", keys=secrets))
    people = [f"users/p{n}" for n in range(7)]
    for person in [*people, BOB]:
        before.seal(f"{person} wrote this", person)
    done = DataKeys(store, masters("new", "old", keys=secrets)).rewrap(batch=2)
    assert done.moved == 7
    passed, counted = store.read[:8], store.read[8:]
    assert len(set(passed)) == 8
    [bobs] = [k for k in store._keys.values() if k.person == BOB]
    assert counted == [bobs.key_id]
    assert done.made_meanwhile.named == [(bobs.key_id, "old")] and done.left == 1


def test_a_rewrap_goes_past_keys_it_cannot_unwrap_and_names_them() -> None:
    """One key wrapped by a master key the secret no longer holds (a missed
    earlier rotation), one whose row was given another person's wrapping:
    the rewrap moves every other key, before and after them, logs each of
    the two by id and master id only, and counts them as left."""
    store = MemoryKeyStore()
    secrets: dict[str, str] = {}
    before = sealer(store, masters("old", keys=secrets))
    tokens = {p: before.seal(f"{p} wrote this", p) for p in [f"users/p{n}" for n in range(6)]}
    sealer(store, masters("gone", keys=secrets)).seal("lost", ALICE)
    before.seal("hello", BOB)
    alices, bobs, p0s = (
        next(k for k in store._keys.values() if k.person == p) for p in (ALICE, BOB, "users/p0")
    )
    store._keys[bobs.key_id] = WrappedKey(bobs.key_id, BOB, p0s.master_id, p0s.wrapped)

    rotating = DataKeys(store, masters("new", "old", keys=secrets))
    with capture_logs() as logs:
        done = rotating.rewrap(batch=2)
    assert done.moved == 6 and done.left == 2
    assert done.master_missing.named == [(alices.key_id, "gone")]
    assert done.altered.named == [(bobs.key_id, "old")]
    assert done.made_meanwhile.count == 0
    passed = [e for e in logs if e["event"] == "personal.rewrap_passed_over"]
    assert sorted((e["key_id"], e["master_key"]) for e in passed) == sorted(
        [(str(alices.key_id), "gone"), (str(bobs.key_id), "old")]
    )
    for event in passed:
        assert set(event) == {"event", "log_level", "key_id", "master_key", "error"}

    after = Sealer(DataKeys(store, masters("new", keys=secrets)))
    assert after.reveal_many(tokens.values()) == {t: f"{p} wrote this" for p, t in tokens.items()}


def test_a_key_made_behind_the_rewrap_is_counted_and_the_next_run_moves_it() -> None:
    """A process still on the old secret makes a key while the rewrap runs,
    its id below where the pass has got to: the pass cannot see it, the
    count after it does, and a second run moves it."""
    secrets: dict[str, str] = {}
    old_only = masters("old", keys=secrets)

    class MadeMeanwhile(MemoryKeyStore):
        reads = 0

        def wrapped_by_other_than(
            self, master_id: str, limit: int, after: uuid.UUID | None = None
        ) -> list[WrappedKey]:
            self.reads += 1
            if self.reads == 2:  # the pass is past its first batch
                key_id = uuid.UUID(int=1)
                master_id_, wrapped = old_only.wrap(os.urandom(32), key_id.bytes, ALICE)
                self.add_current(WrappedKey(key_id, ALICE, master_id_, wrapped))
            return super().wrapped_by_other_than(master_id, limit, after)

    store = MadeMeanwhile()
    before = Sealer(DataKeys(store, old_only))
    for n in range(5):
        before.seal("hello", f"users/p{n}")
    rotating = DataKeys(store, masters("new", "old", keys=secrets))

    first = rotating.rewrap(batch=2)
    assert first.moved == 5
    assert first.made_meanwhile.named == [(uuid.UUID(int=1), "old")] and first.left == 1
    second = rotating.rewrap(batch=2)
    assert (second.moved, second.left) == (1, 0)
    assert {k.master_id for k in store._keys.values()} == {"new"}


def run_rewrap(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    store: MemoryKeyStore,
    setting: str,
) -> tuple[int, str, str]:
    """The operator's `rewrap` command on `store` with the secret `setting`:
    its exit status, stdout and stderr."""

    @contextlib.contextmanager
    def open_sealer(settings: PersonalDataSettings) -> Iterator[Sealer]:
        yield Sealer(DataKeys(store, settings.master_key_set()))

    monkeypatch.setenv("CASEMESH_MASTER_KEYS", setting)
    monkeypatch.setenv("CASEMESH_KEYS_DATABASE_URL", "postgresql://u@db:5432/casemesh_keys")
    monkeypatch.setattr(personal_command, "open_sealer", open_sealer)
    monkeypatch.setattr(personal_command, "configure_logging", lambda *_: None)
    status = personal_command.main(["rewrap"])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_rewrap_command_fails_naming_the_keys_it_left_until_none_is_left(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator about to drop the old master key is told not to yet: the
    command exits 1, names the keys left (the first few of many) and says
    what to do; done that, the next run moves them and exits 0."""
    store = MemoryKeyStore()
    secrets: dict[str, str] = {}
    for n in range(3):
        sealer(store, masters("old", keys=secrets)).seal("hello", f"users/p{n}")
    lost = sealer(store, masters("gone", keys=secrets))
    for n in range(NAMED + 2):
        lost.seal("hello", f"users/lost{n}")
    gone = sorted(k.key_id for k in store._keys.values() if k.master_id == "gone")
    new = f"new:{secrets.setdefault('new', new_master_key())}"

    status, out, err = run_rewrap(monkeypatch, capsys, store, f"{new},old:{secrets['old']}")
    assert status == 1
    assert "3 data keys now wrapped by new" in out
    assert f"Data keys still wrapped by a master key other than new: {NAMED + 2}." in err
    assert "Keep every master key in CASEMESH_MASTER_KEYS for now" in err
    assert f"a master key CASEMESH_MASTER_KEYS does not hold ({NAMED + 2})" in err
    assert all(f"{k} (master key gone)" in err for k in gone[:NAMED])
    assert str(gone[NAMED]) not in err and "and 2 more" in err

    setting = f"{new},old:{secrets['old']},gone:{secrets['gone']}"
    status, out, err = run_rewrap(monkeypatch, capsys, store, setting)
    assert (status, err) == (0, "")
    assert f"{NAMED + 2} data keys now wrapped by new" in out


def revealed_by_a_replica(now: list[float]) -> tuple[Sealer, Sealer, str]:
    """Alice's contact sealed by one process (the writer) and a replica of
    the same key store, on the clock `now[0]`, to reveal it; and the token."""
    store = MemoryKeyStore()
    secrets: dict[str, str] = {}
    writer = sealer(store, masters("m1", keys=secrets))
    token = writer.seal("alice@example.com", ALICE)
    replica = Sealer(DataKeys(store, masters("m1", keys=secrets), clock=lambda: now[0]))
    return writer, replica, token


@pytest.mark.parametrize("heard", [False, True], ids=["not-yet-heard", "heard-meanwhile"])
def test_what_a_process_revealed_before_an_erasure_is_not_sealed_again_after_it(
    heard: bool,
) -> None:
    """A replica read a person's contact with their key (a reporter's, to be
    copied into a decision's event); then they were erased, and the replica
    has not heard yet, or hears it before the copy is sealed. Sealed for
    them under a new key, the copy would outlive the erasure: sealing for
    them is refused (ABORTED, to be tried again) by every call for a while,
    the first and any other under way, and read again the contact is
    erased. Past that while, what they give is sealed as anyone's."""
    now = [0.0]
    writer, replica, token = revealed_by_a_replica(now)
    keys = replica.keys
    revealed = replica.reveal(token)
    assert revealed == "alice@example.com"

    writer.keys.erase(ALICE)
    if heard:
        keys.forget(ALICE)
    for _ in range(2):  # this call, and another under way
        with pytest.raises(Aborted) as meanwhile:
            replica.seal(revealed, ALICE)
        assert meanwhile.value.reason == "PERSON_ERASED_MEANWHILE"
    assert replica.look_many([token])[token].disclosure is Disclosure.ERASED
    now[0] += keys.cache_seconds + 1
    again = replica.seal("alice@new.example.com", ALICE)
    assert writer.reveal(again) == "alice@new.example.com"


def test_a_key_left_over_in_memory_long_unused_refuses_nothing() -> None:
    """A replica read Alice's contact a day ago (the key's entry still in
    memory, long out of date); she was erased and has come back since: what
    she gives now is sealed, not refused as if erased a moment ago."""
    now = [0.0]
    writer, replica, token = revealed_by_a_replica(now)
    replica.reveal(token)
    writer.keys.erase(ALICE)
    now[0] += 86_400.0
    again = replica.seal("alice@new.example.com", ALICE)
    assert writer.reveal(again) == "alice@new.example.com"


def test_without_the_rewrap_dropping_the_old_master_key_is_refused_by_name() -> None:
    store = MemoryKeyStore()
    secrets: dict[str, str] = {}
    token = sealer(store, masters("old", keys=secrets)).seal("hello", ALICE)
    only_new = Sealer(DataKeys(store, masters("new", keys=secrets)))
    [alices] = store._keys
    with pytest.raises(UnknownMasterKey, match=rf"{alices}.*'old'.*CASEMESH_MASTER_KEYS"):
        only_new.reveal(token)


def test_another_process_stops_revealing_once_told_to_forget_the_person() -> None:
    store = MemoryKeyStore()
    clock = Clock()
    keys = masters("m1")
    eraser = Sealer(DataKeys(store, keys))
    consumer = Sealer(DataKeys(store, keys, cache_seconds=60, clock=clock))
    token = eraser.seal("alice@example.com", ALICE)
    assert consumer.reveal(token) == "alice@example.com"

    eraser.keys.erase(ALICE)
    # The consumer still holds the key in memory (for at most its cache time) ...
    assert consumer.reveal(token) == "alice@example.com"
    # ... until the erasure reaches it.
    consumer.keys.forget(ALICE)
    assert consumer.reveal(token) == ERASED


def test_another_process_stops_revealing_when_its_cache_time_is_up() -> None:
    store = MemoryKeyStore()
    clock = Clock()
    keys = masters("m1")
    eraser = Sealer(DataKeys(store, keys))
    consumer = Sealer(DataKeys(store, keys, cache_seconds=60, clock=clock))
    token = eraser.seal("alice@example.com", ALICE)
    consumer.reveal(token)
    eraser.keys.erase(ALICE)

    clock.now += 59
    assert consumer.reveal(token) == "alice@example.com"
    clock.now += 1
    assert consumer.reveal(token) == ERASED


def test_the_key_memory_is_bounded() -> None:
    store = CountingStore()
    keys = masters("m1")
    tokens = [Sealer(DataKeys(store, keys)).seal("x", f"users/{n}") for n in range(3)]
    reader = Sealer(DataKeys(store, keys, cache_size=2))
    for token in tokens:
        reader.reveal(token)
    assert len(store.lookups) == 3
    reader.reveal(tokens[2])  # still held
    assert len(store.lookups) == 3
    reader.reveal(tokens[0])  # pushed out by the third
    assert len(store.lookups) == 4


def test_each_person_has_a_key_of_their_own() -> None:
    personal = sealer()
    a = personal.seal("a", ALICE)
    b = personal.seal("b", BOB)
    personal.keys.erase(BOB)
    assert (personal.reveal(a), personal.reveal(b)) == ("a", ERASED)


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("", "entry 1 must be id:base64key"),
        ("m1:" + base64.b64encode(os.urandom(16)).decode(), "must be 32 bytes, not 16"),
        ("m1:%%%", "not base64"),
        (f"m1:{new_master_key()},m1:{new_master_key()}", "appears twice"),
        (f"bad id:{new_master_key()}", "an id is"),
    ],
)
def test_a_bad_master_key_secret_stops_start_up_naming_the_setting(
    setting: str, says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASEMESH_MASTER_KEYS", setting)
    monkeypatch.setenv("CASEMESH_KEYS_DATABASE_URL", "postgresql://u@db:5432/casemesh_keys")
    with pytest.raises(SystemExit) as stopped:
        load(PersonalDataSettings)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "CASEMESH_MASTER_KEYS" in err and says in err


def test_good_settings_give_the_master_keys_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEMESH_MASTER_KEYS", f"2026b:{new_master_key()},2026a:{new_master_key()}")
    monkeypatch.setenv("CASEMESH_KEYS_DATABASE_URL", "postgresql://u@db:5432/casemesh_keys")
    settings = load(PersonalDataSettings)
    assert settings.master_key_set().ids == ("2026b", "2026a")
    assert settings.master_key_set().current_id == "2026b"
    assert settings.key_cache_seconds == 60


def test_a_master_key_may_be_written_in_either_base64_alphabet() -> None:
    raw = bytes(range(250, 256)) * 5 + b"\xfb\xff"  # encodes with + and / (or - and _)
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "+" in standard or "/" in standard
    keys = MasterKeys.parse(f"a:{standard},b:{urlsafe}")
    key_id = uuid.uuid4().bytes
    wrapped = keys.wrap(b"k" * 32, key_id, ALICE)
    assert MasterKeys.parse(f"a:{urlsafe}").unwrap(*wrapped, key_id, ALICE) == b"k" * 32


def test_a_data_key_id_of_another_length_is_a_mistake_caught_at_once() -> None:
    with pytest.raises(AssertionError, match="16 bytes"):
        masters("m1").wrap(b"k" * 32, b"id", ALICE)


class ErasingStore(MemoryKeyStore):
    """A store whose next read lets an erasure of the person run before it
    answers with what it read (another thread's erasure, made certain)."""

    def __init__(self) -> None:
        super().__init__()
        self.during_read: Callable[[], Any] | None = None

    def _interrupted(self) -> None:
        during, self.during_read = self.during_read, None
        if during is not None:
            during()

    def add_current(self, key: WrappedKey) -> WrappedKey:
        found = super().add_current(key)
        self._interrupted()
        return found

    def find(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, WrappedKey | None]:
        found = super().find(key_ids)
        self._interrupted()
        return found


def test_a_key_read_while_its_person_is_erased_is_not_kept_after_the_erasure() -> None:
    store = ErasingStore()
    keys = masters("m1")
    token = Sealer(DataKeys(store, keys)).seal("alice@example.com", ALICE)
    reader = Sealer(DataKeys(store, keys, cache_seconds=60))
    store.during_read = lambda: reader.keys.erase(ALICE)

    reader.reveal(token)  # read before the erasure: in flight, not kept

    assert reader.reveal(token) == ERASED


def test_sealing_while_the_person_is_erased_uses_a_key_made_after_the_erasure() -> None:
    store = ErasingStore()
    now = [0.0]
    personal = Sealer(DataKeys(store, masters("m1"), clock=lambda: now[0]))
    before = personal.seal("old@example.com", ALICE)
    now[0] += personal.keys.cache_seconds + 1  # so that the next seal reads the store
    store.during_read = lambda: personal.keys.erase(ALICE)

    after = personal.seal("new@example.com", ALICE)

    assert personal.reveal(before) == ERASED
    assert personal.reveal(after) == "new@example.com"


def forged(key_id: uuid.UUID) -> str:
    body = key_id.bytes + os.urandom(12 + 16 + 8)
    return "pd1." + base64.urlsafe_b64encode(body).decode().rstrip("=")


def test_a_token_whose_key_was_never_stored_is_not_shown_as_erased() -> None:
    store = CountingStore()
    personal = sealer(store)
    stranger = forged(uuid.uuid4())
    with pytest.raises(UnknownDataKey, match="wrong key database"):
        personal.reveal(stranger)
    found = personal.look_many([stranger])[stranger]
    assert (found.text, found.disclosure) == (UNREADABLE, Disclosure.UNKNOWN)
    assert isinstance(found.error, UnknownDataKey)
    # Not remembered: the store is asked each time.
    assert store.lookups == [1, 1]


def test_a_process_on_an_empty_key_store_does_not_show_everything_as_erased() -> None:
    token = sealer().seal("alice@example.com", ALICE)
    wrong_database = sealer(master_keys=masters("m1"))
    with pytest.raises(UnknownDataKey):
        wrong_database.reveal(token)
    assert wrong_database.reveal_many([token]) == {token: UNREADABLE}


def test_text_that_merely_looks_like_a_token_reads_as_itself() -> None:
    personal = sealer()
    for text in ["pd1." + "A" * 60, forged(uuid.UUID(int=12345)), forged(uuid.uuid1())]:
        assert is_token(text) is False
        assert personal.look(text).disclosure is Disclosure.PLAIN


def test_a_token_has_one_spelling() -> None:
    personal = sealer()
    token = personal.seal("alice@example.com", ALICE)
    assert len(token[4:]) % 4 != 0  # its last character carries unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # The last character with its lowest (unused) bit flipped decodes the same.
    twin = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    assert base64.urlsafe_b64decode(twin[4:] + "==") == base64.urlsafe_b64decode(token[4:] + "==")
    for other in [token + "\n", token + "=", twin, token.replace("-", "+").replace("_", "/")]:
        if other == token:
            continue
        assert not is_token(other), other
        assert personal.look(other).disclosure is Disclosure.PLAIN


def test_one_bad_token_does_not_fail_a_batch_and_alone_it_raises() -> None:
    store = MemoryKeyStore()
    secrets: dict[str, str] = {}
    old = sealer(store, masters("old", keys=secrets))
    lost = old.seal("under a dropped master key", BOB)
    personal = Sealer(DataKeys(store, masters("new", keys=secrets)))
    good = personal.seal("alice@example.com", ALICE)
    at = len(good) - 10
    altered = good[:at] + ("A" if good[at] != "A" else "B") + good[at + 1 :]
    unknown = forged(uuid.uuid4())

    found = personal.look_many([good, altered, lost, unknown, "plain"])

    assert found[good].text == "alice@example.com"
    assert found["plain"].disclosure is Disclosure.PLAIN
    assert [found[t].disclosure for t in (altered, lost, unknown)] == [
        Disclosure.REFUSED,
        Disclosure.REFUSED,
        Disclosure.UNKNOWN,
    ]
    assert {found[t].text for t in (altered, lost, unknown)} == {UNREADABLE}
    assert personal.reveal_many([good, lost])[lost] == UNREADABLE
    assert personal.look_many([good], BOB)[good].disclosure is Disclosure.REFUSED
    for bad, error in [
        (altered, TokenRefused),
        (lost, UnknownMasterKey),
        (unknown, UnknownDataKey),
    ]:
        with pytest.raises(error) as raised:
            personal.reveal(bad)
        assert isinstance(raised.value, PersonalDataError)


def test_a_wrapped_key_moved_to_another_persons_row_is_refused_not_revealed() -> None:
    store = MemoryKeyStore()
    personal = sealer(store)
    token = personal.seal("alice@example.com", ALICE)
    [alices] = store.wrapped_by_other_than("none", 10)
    store._keys[alices.key_id] = WrappedKey(alices.key_id, BOB, alices.master_id, alices.wrapped)
    reader = Sealer(DataKeys(store, personal.keys.masters))
    assert reader.look_many([token])[token].disclosure is Disclosure.REFUSED
    # Named by id, so that an operator can find the row.
    with pytest.raises(WrappedKeyRefused, match=f"data key {alices.key_id}, wrapped by master"):
        reader.reveal(token)


def test_erased_keys_remembered_push_no_live_key_out_of_memory() -> None:
    store = CountingStore()
    keys = masters("m1")
    writer = Sealer(DataKeys(store, keys))
    live = writer.seal("kept", ALICE)
    erased = [writer.seal("gone", f"users/{n}") for n in range(5)]
    for n in range(5):
        writer.keys.erase(f"users/{n}")
    reader = Sealer(DataKeys(store, keys, cache_size=2))
    reader.reveal(live)
    for token in erased:
        assert reader.reveal(token) == ERASED
    lookups = len(store.lookups)
    assert reader.reveal(live) == "kept"
    assert len(store.lookups) == lookups


async def test_asyncio_code_seals_and_reveals_reaching_the_store_only_on_a_miss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = CountingStore()
    threads: list[str] = []
    to_thread = asyncio.to_thread

    async def counted(func: Callable[..., Any], /, *args: Any) -> Any:
        threads.append(func.__name__)
        return await to_thread(func, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    closed: list[bool] = []
    monkeypatch.setattr(store, "close", lambda: closed.append(True))
    async with AsyncSealer(sealer(store)) as personal:
        token = await personal.seal("alice@example.com", ALICE)
        again = await personal.seal("alice again", ALICE)
        assert threads == ["current"]
        assert await personal.reveal_many([token, again, "plain"]) == {
            token: "alice@example.com",
            again: "alice again",
            "plain": "plain",
        }
        assert threads == ["current"] and store.lookups == []
        stranger = forged(uuid.uuid4())
        assert (await personal.look_many([stranger]))[stranger].disclosure is Disclosure.UNKNOWN
        assert threads == ["current", "find"]
        with pytest.raises(UnknownDataKey):
            await personal.reveal(stranger)
        assert await personal.erase(ALICE) == 1
        assert await personal.reveal(token) == ERASED
        other = AsyncSealer(Sealer(DataKeys(store, personal.sealer.keys.masters)))
        bobs = await other.seal("bob@example.com", BOB)
        assert await personal.reveal(bobs) == "bob@example.com"
        store.erase(BOB)  # by another process
        personal.forget(BOB)
        assert await personal.reveal(bobs) == ERASED
    assert closed == [True]


# -- a case's own key: retention erases one case, the person's others stay --

CASE_A = uuid.UUID("3b0d4f1e-51a4-4a51-9c1b-6b0f5b1f0a01")
CASE_B = uuid.UUID("3b0d4f1e-51a4-4a51-9c1b-6b0f5b1f0a02")


def test_a_cases_text_reveals_and_carries_its_case_key() -> None:
    personal = sealer()
    token = personal.seal("alice@example.com", ALICE, CASE_A)
    assert token.startswith("pd2.") and is_token(token)
    assert "alice" not in token
    assert personal.reveal(token) == "alice@example.com"
    assert personal.reveal(token, ALICE) == "alice@example.com"
    assert case_key_of(token) == personal.keys.for_case(CASE_A).key_id
    assert case_key_of(personal.seal("x", ALICE)) is None
    # One case key per case in a process; another case gets another.
    assert case_key_of(personal.seal("y", BOB, CASE_A)) == case_key_of(token)
    assert case_key_of(personal.seal("y", ALICE, CASE_B)) != case_key_of(token)


def test_destroying_a_cases_keys_erases_that_case_only() -> None:
    store = MemoryKeyStore()
    personal = sealer(store)
    in_a = [personal.seal("call me on 13800138000", ALICE, CASE_A)]
    in_a.append(personal.seal("ok", BOB, CASE_A))
    in_b = personal.seal("my other problem", ALICE, CASE_B)
    plain = personal.seal("alice@example.com", ALICE)

    assert personal.keys.destroy({case_key_of(in_a[0])}) == 1  # type: ignore[arg-type]

    for token in in_a:
        assert personal.look(token).erased
    assert personal.reveal(in_b) == "my other problem"
    assert personal.reveal(plain) == "alice@example.com"
    # Another process that never saw the keys reads the case as erased too.
    assert Sealer(DataKeys(store, personal.keys.masters)).reveal(in_a[0]) == ERASED
    # New text of the case gets a new key; destroying again finds nothing.
    assert personal.reveal(personal.seal("later", ALICE, CASE_A)) == "later"
    assert personal.keys.destroy({case_key_of(in_a[0])}) == 0  # type: ignore[arg-type]


def test_erasing_the_person_erases_their_text_in_every_case() -> None:
    personal = sealer()
    token = personal.seal("I was charged twice", ALICE, CASE_A)
    bobs = personal.seal("me too", BOB, CASE_A)
    personal.keys.erase(ALICE)
    assert personal.reveal(token) == ERASED
    assert personal.reveal(bobs) == "me too"


def test_case_keys_are_made_in_batches_and_never_destroy_a_persons_key() -> None:
    store = CountingStore()
    personal = sealer(store)
    tokens = [personal.seal("text", ALICE, uuid.uuid4()) for _ in range(300)]
    # The first case waited for a batch; the others came from spares, made
    # again in the background before they ran out (or by a caller that ran dry).
    assert store.batches[0] == 128 and sum(store.batches) >= 300
    assert len({case_key_of(t) for t in tokens}) == 300
    alices_key = personal.keys.current(ALICE).key_id
    assert personal.keys.destroy({alices_key}) == 0
    assert all(personal.reveal(t) == "text" for t in tokens)


def test_a_case_token_naming_two_person_keys_is_refused() -> None:
    # Sealed properly, by someone holding both keys: the kinds give it away.
    personal = sealer()
    forged = _seal(personal.keys.current(ALICE), "x", ALICE, personal.keys.current(BOB))
    with pytest.raises(TokenRefused, match="wrong kind of key"):
        personal.reveal(forged)


def test_a_case_token_naming_a_case_key_as_its_person_is_refused() -> None:
    personal = sealer()
    case_key = personal.keys.for_case(CASE_A)
    forged = _seal(case_key, "x", case_key.person, personal.keys.current(ALICE))
    with pytest.raises(TokenRefused, match="wrong kind of key"):
        personal.reveal(forged)


def test_a_case_keys_owner_is_never_taken_for_a_person() -> None:
    personal = sealer()
    owner = personal.keys.for_case(CASE_A).person
    assert owner.startswith("#case/")
    for refused in (
        lambda: personal.seal("x", owner),
        lambda: personal.keys.current(owner),
        lambda: personal.keys.erase(owner),
    ):
        with pytest.raises(ValueError, match="#case/"):
            refused()


def test_a_case_token_with_its_keys_swapped_is_refused() -> None:
    personal = sealer()
    token = personal.seal("secret", ALICE, CASE_A)
    raw = base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4))
    swapped = raw[16:32] + raw[:16] + raw[32:]
    with pytest.raises(TokenRefused):
        personal.reveal("pd2." + base64.urlsafe_b64encode(swapped).rstrip(b"=").decode())


def test_case_keys_move_to_a_new_master_key_with_the_rest() -> None:
    store = MemoryKeyStore()
    secrets: dict[str, str] = {}
    token = sealer(store, masters("old", keys=secrets)).seal("hello", ALICE, CASE_A)
    assert DataKeys(store, masters("new", "old", keys=secrets)).rewrap().moved >= 2
    assert Sealer(DataKeys(store, masters("new", keys=secrets))).reveal(token) == "hello"


def test_an_events_request_fingerprints_are_sealed_with_its_persons_texts_only() -> None:
    """A fingerprint hashes what a request said: sealed with the event's
    person's texts; an event that names nobody (a decision naming no
    uploader) keeps it as it is, rather than fail to be stored."""

    class Replied:
        pass

    personal = PersonalFields({Replied: PersonalEvent("actor", ("body",))}).of(Replied)
    assert personal is not None
    named = {"actor": "alice", "body": "13800138000", "change_request_fingerprint": "f1"}
    assert personal.texts(named) == ["13800138000", "f1"]
    nobody = {
        "actor": "",
        "body": "",
        "change_request_fingerprint": "f2",
        "request_fingerprint": "f3",
    }
    assert personal.texts(nobody) == []
    assert personal.rewrite(nobody, str.upper) == nobody
