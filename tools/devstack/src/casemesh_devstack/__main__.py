"""``casemesh-dev``: run the local Casemesh stack (``up``), only its infrastructure
(``infra``), or remove its run directory (``clean``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from casemesh_devstack.kafka import KafkaError
from casemesh_devstack.postgres import PostgresError
from casemesh_devstack.stack import StackConfig, run_clean, run_infra, run_up


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="casemesh-dev",
        description="Local Casemesh stack: PostgreSQL, Kafka (KRaft), mail/SMS sinks, services.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        "up": "run everything in the foreground (Ctrl-C stops it all)",
        "infra": "run only PostgreSQL + Kafka (with databases and topics) in the foreground",
        "clean": "delete the run directory (refuses while anything still runs from it)",
    }
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument(
            "--run-dir",
            type=Path,
            default=None,
            help="where data, logs and sinks live (default: <repo root>/.run)",
        )
        sub.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="casemesh-dev: %(message)s",
    )
    # aiokafka reports every refused connection while the broker boots; not news.
    logging.getLogger("aiokafka").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    # aiosmtpd narrates every SMTP session at INFO under this name.
    logging.getLogger("mail.log").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    cfg = StackConfig.from_env(args.run_dir)
    commands = {"up": run_up, "infra": run_infra, "clean": run_clean}
    try:
        code = commands[args.command](cfg)
    except (PostgresError, KafkaError) as exc:
        print(f"casemesh-dev: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
