"""The key database's operator commands (docs/operations.md):

    python -m casemesh.platform.personal schema             # the key table, if missing
    python -m casemesh.platform.personal new-master-key ID  # ID:<key>, for the secret
    python -m casemesh.platform.personal rewrap             # onto the current master key

`schema` reads `CASEMESH_KEYS_DATABASE_URL`; `rewrap` also reads
`CASEMESH_MASTER_KEYS`, whose first key becomes every data key's wrapping.
`rewrap` exits 1 when it leaves data keys on another master key, naming
them and saying why on stderr: that master key must not be dropped yet.
"""

from __future__ import annotations

import argparse
import sys

from casemesh.platform.logging import configure_logging, get_logger
from casemesh.platform.personal import open_sealer
from casemesh.platform.personal.keys import LeftBehind, Rewrapped
from casemesh.platform.personal.masterkeys import ID, SETTING, new_master_key
from casemesh.platform.personal.postgres import create_schema
from casemesh.platform.personal.settings import KeyDatabaseSettings, PersonalDataSettings
from casemesh.platform.settings import load

log = get_logger("casemesh.personal")


def master_key_id(text: str) -> str:
    if not ID.fullmatch(text):
        raise argparse.ArgumentTypeError("letters, digits, _ and -, at most 32")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m casemesh.platform.personal")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("schema", help="create the key table in the key database, if missing")
    new = commands.add_parser("new-master-key", help="print a new master key as ID:KEY")
    new.add_argument("id", type=master_key_id, help="its id, e.g. the date: 2027-01")
    commands.add_parser("rewrap", help="wrap every data key with the current master key")
    args = parser.parse_args(argv)
    if args.command == "new-master-key":
        print(f"{args.id}:{new_master_key()}")
        return 0
    if args.command == "schema":
        database = load(KeyDatabaseSettings)
        configure_logging(database.service_name, database.log_level, database.log_format)
        create_schema(database.keys_database_url)
        log.info("keys.schema_ready")
        return 0
    settings = load(PersonalDataSettings)
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    current = settings.master_key_set().current_id
    with open_sealer(settings) as sealer:
        done = sealer.keys.rewrap()
    log.info(
        "keys.rewrapped",
        keys=done.moved,
        master_key=current,
        left_master_missing=done.master_missing.count,
        left_altered=done.altered.count,
        left_made_meanwhile=done.made_meanwhile.count,
    )
    print(f"{done.moved} data keys now wrapped by {current}")
    if not done.left:
        return 0
    print(left_behind(done, current), file=sys.stderr)
    return 1


def left_behind(done: Rewrapped, current: str) -> str:
    """What an operator reads when a rewrap left keys on other master keys:
    how many, which (by id), why, and what to do before the next run."""
    lines = [
        f"Data keys still wrapped by a master key other than {current}: {done.left}."
        f" Keep every master key in {SETTING} for now: dropping one that still wraps"
        " data keys makes what they sealed unreadable."
    ]
    for left, why, what_to_do in [
        (
            done.master_missing,
            f"Wrapped by a master key {SETTING} does not hold",
            "put it back, after the current one, and run the rewrap again.",
        ),
        (
            done.altered,
            "Not unwrapping, their row altered or given another person's wrapping",
            "restore those rows from a backup of the key database, keeping the master"
            " key that wraps them.",
        ),
        (
            done.made_meanwhile,
            "Made or wrapped anew while the rewrap went by, by a process still on the old secret",
            f"once every process runs with {current} first, run the rewrap again.",
        ),
    ]:
        if left.count:
            lines += [f"{why} ({left.count}): {what_to_do}", *named(left)]
    return "\n".join(lines)


def named(left: LeftBehind) -> list[str]:
    lines = [f"  {key_id} (master key {master_id})" for key_id, master_id in left.named]
    if left.count > len(left.named):
        lines.append(f"  and {left.count - len(left.named)} more")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
