"""``casemesh-dev``: run the local Casemesh stack (``up``), only its infrastructure
(``infra``), only the mail and SMS sinks (``sinks``, as docker-compose runs them),
or remove its run directory (``clean``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from casemesh_devstack.kafka import KafkaError
from casemesh_devstack.postgres import PostgresError
from casemesh_devstack.sinks import MailSink, SmsSink
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
        "sinks": "run only the local mail (SMTP) and SMS (HTTP) sinks in the foreground",
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
        if name == "sinks":
            sub.add_argument("--host", default="127.0.0.1", help="address to listen on")
    return parser


def run_sinks(cfg: StackConfig, host: str) -> int:
    """The mail and SMS sinks alone, until SIGINT/SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    mail = MailSink(cfg.sinks_dir, cfg.smtp_port, host=host)
    sms = SmsSink(cfg.sinks_dir, cfg.sms_port, host=host)
    mail.start()
    sms.start()
    print(
        f"casemesh-dev: SMTP sink on {host}:{cfg.smtp_port} -> {mail.log_path}\n"
        f"casemesh-dev: SMS sink on {host}:{cfg.sms_port}/sms -> {sms.log_path}",
        flush=True,
    )
    stop.wait()
    sms.stop()
    mail.stop()
    return 0


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
        code = run_sinks(cfg, args.host) if args.command == "sinks" else commands[args.command](cfg)
    except (PostgresError, KafkaError) as exc:
        print(f"casemesh-dev: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
