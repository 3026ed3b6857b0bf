"""Personal data sealed per person (crypto-shredding), on the in-memory key
store: what a consumer reveals, what an erasure leaves, what a master key
rotation keeps readable, and what is refused."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Collection

import pytest

from casemesh.platform.personal import (
    ERASED,
    DataKeys,
    Disclosure,
    MasterKeys,
    MemoryKeyStore,
    PersonalDataSettings,
    Sealer,
    TokenRefused,
    UnknownMasterKey,
    is_erased,
    is_token,
)
from casemesh.platform.personal.keys import WrappedKey
from casemesh.platform.personal.masterkeys import new_master_key
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

    def find(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, WrappedKey]:
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
    assert rotating.rewrap() == 2
    assert rotating.rewrap() == 0

    after = Sealer(DataKeys(store, masters("new", keys=secrets)))
    for person, token in tokens.items():
        assert after.reveal(token) == f"{person} wrote this"


def test_without_the_rewrap_dropping_the_old_master_key_is_refused_by_name() -> None:
    store = MemoryKeyStore()
    secrets: dict[str, str] = {}
    token = sealer(store, masters("old", keys=secrets)).seal("hello", ALICE)
    only_new = Sealer(DataKeys(store, masters("new", keys=secrets)))
    with pytest.raises(UnknownMasterKey, match=r"'old'.*CASEMESH_MASTER_KEYS"):
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
    wrapped = keys.wrap(b"k" * 32, b"id", ALICE)
    assert MasterKeys.parse(f"a:{urlsafe}").unwrap(*wrapped, b"id", ALICE) == b"k" * 32
