"""The key database's operator commands (docs/operations.md):

    python -m casemesh.platform.personal schema             # the key table, if missing
    python -m casemesh.platform.personal new-master-key ID  # ID:<key>, for the secret
    python -m casemesh.platform.personal rewrap             # onto the current master key

`schema` reads `CASEMESH_KEYS_DATABASE_URL`; `rewrap` also reads
`CASEMESH_MASTER_KEYS`, whose first key becomes every data key's wrapping.
"""

from __future__ import annotations

import argparse

from casemesh.platform.logging import configure_logging, get_logger
from casemesh.platform.personal import open_sealer
from casemesh.platform.personal.masterkeys import ID, new_master_key
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
    with open_sealer(settings) as sealer:
        moved = sealer.keys.rewrap()
    log.info("keys.rewrapped", keys=moved, master_key=settings.master_key_set().current_id)
    print(f"{moved} data keys now wrapped by {settings.master_key_set().current_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
