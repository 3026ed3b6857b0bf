"""The contracts guard themselves: `./dev lint` runs scripts/check-breaking.sh, which
holds proto/ to buf's breaking rules (proto/buf.yaml) against the main branch.

Each test copies proto/ into a scratch git repository (committed on main), changes
the copy as a developer might, and runs the script on it, as the lint does here.
Needs npx and buf 1.75.0 (npx fetches it once; after that it works offline).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check-breaking.sh"
API = "proto/casemesh/v1/tickets.proto"
EVENTS = "proto/casemesh/events/v1/tickets.proto"
LIST_TICKETS = "message ListTicketsRequest {\n  // "
# TicketCreated up to its second field, comments included.
TICKET_CREATED = (
    "message TicketCreated {\n"
    "  // Which ticket, its version after this event, who acted, when, and its status.\n"
    "  TicketEventHeader header = 1;\n"
    "  // The user who opened it (a token's `sub`); also the header's `actor`.\n"
)
# ListTicketsRequest's paging fields, the size with its field rule
PAGING = (
    "int32 page_size = 1 [(buf.validate.field).int32.(casemesh.v1.page_size) = true];\n"
    "  // `next_page_token` from the previous page; empty for the first page.\n"
    "  string page_token = 2;\n"
    "  // Only tickets"
)


class Scratch:
    """A git repository holding a copy of proto/, committed on main."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copytree(REPO / "proto", root / "proto")
        self.git("init", "-q", "-b", "main")
        self.commit("the contracts as they are")

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True)

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        who = ("-c", "user.name=Casemesh tests", "-c", "user.email=tests@casemesh.invalid")
        self.git(*who, "commit", "-q", "-m", message)

    def edit(self, path: str, old: str, new: str) -> None:
        file = self.root / path
        text = file.read_text()
        assert text.count(old) == 1, f"{old!r} is not once in {path}"
        file.write_text(text.replace(old, new))

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), str(self.root)],
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture
def scratch(tmp_path: Path) -> Scratch:
    if shutil.which("npx") is None:
        # A developer without node may go on; CI must not pass without this check.
        missing = "npx is not installed (it runs buf)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(missing)
        pytest.skip(missing)
    return Scratch(tmp_path / "contracts")


@pytest.mark.parametrize(
    ("path", "old", "new", "complaint"),
    [
        pytest.param(
            EVENTS,
            TICKET_CREATED + "  string requester = 2;",
            TICKET_CREATED + "  string requester = 12;",
            'Previously present field "2" with name "requester" on message "TicketCreated"',
            id="event-field-renumbered",
        ),
        pytest.param(
            API,
            PAGING,
            PAGING.replace("page_size = 1", "page_size = 4"),
            'Previously present field "1" with name "page_size" on message "ListTicketsRequest"',
            id="api-field-renumbered",
        ),
        pytest.param(
            API,
            PAGING,
            PAGING.replace("page_token", "page_cursor"),
            'Field "2" on message "ListTicketsRequest" changed name from "page_token"',
            id="api-field-renamed",
        ),
        pytest.param(
            EVENTS,
            TICKET_CREATED + "  string requester = 2;",
            TICKET_CREATED + "  bytes requester = 2;",
            'Field "2" with name "requester" on message "TicketCreated" changed type',
            id="event-field-retyped",
        ),
        pytest.param(
            EVENTS,
            TICKET_CREATED + "  string requester = 2;",
            TICKET_CREATED + '  reserved 2;\n  reserved "requester";',
            'Previously present field "2" with name "requester" on message "TicketCreated"',
            id="event-field-deleted-though-reserved",
        ),
    ],
)
def test_a_breaking_change_on_a_branch_fails_the_lint_naming_the_field(
    scratch: Scratch, path: str, old: str, new: str, complaint: str
) -> None:
    scratch.git("switch", "-q", "-c", "feature")
    scratch.edit(path, old, new)
    scratch.commit("a change for front ends and consumers to notice")
    checked = scratch.check()
    assert checked.returncode != 0
    assert complaint in checked.stdout
    assert "against main where this branch left it" in checked.stderr


def test_new_fields_pass(scratch: Scratch) -> None:
    scratch.git("switch", "-q", "-c", "feature")
    scratch.edit(
        API,
        LIST_TICKETS,
        LIST_TICKETS.replace("{\n", "{\n  // Newest first when set.\n  bool newest_first = 9;\n"),
    )
    scratch.edit(EVENTS, TICKET_CREATED, TICKET_CREATED + "  string channel_of_entry = 40;\n")
    scratch.commit("additive: a field in the API and one in an event")
    checked = scratch.check()
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_what_main_added_since_a_branch_left_it_is_no_deletion_of_the_branchs(
    scratch: Scratch,
) -> None:
    scratch.git("switch", "-q", "-c", "feature")
    scratch.edit(API, LIST_TICKETS, LIST_TICKETS.replace("{\n", "{\n  bool newest_first = 9;\n"))
    scratch.commit("the branch's own change")
    scratch.git("switch", "-q", "main")
    scratch.edit(EVENTS, TICKET_CREATED, TICKET_CREATED + "  string channel_of_entry = 40;\n")
    scratch.commit("main moves on")
    scratch.git("switch", "-q", "feature")
    checked = scratch.check()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "against main where this branch left it" in checked.stderr


def test_on_main_the_last_commit_is_checked_against_its_parent(scratch: Scratch) -> None:
    # CI runs on a fresh clone of main: what the last commit (a merge, say) brought.
    scratch.edit(API, PAGING, PAGING.replace("page_size = 1", "page_size = 4"))
    scratch.commit("renumbered on main")
    checked = scratch.check()
    assert checked.returncode != 0
    assert 'field "1" with name "page_size" on message "ListTicketsRequest"' in checked.stdout
    assert "against HEAD's first parent" in checked.stderr


def test_with_a_single_commit_nothing_is_compared_and_it_says_so(scratch: Scratch) -> None:
    checked = scratch.check()
    assert checked.returncode == 0
    assert "not checked: HEAD has no parent here" in checked.stderr


def test_the_lint_runs_the_check_with_the_pinned_buf() -> None:
    recipe = (REPO / "justfile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "bash scripts/check-breaking.sh" in recipe
    pins = {
        "justfile": re.findall(r"@bufbuild/buf@([\d.]+)", recipe),
        "script": re.findall(r"@bufbuild/buf@([\d.]+)", SCRIPT.read_text()),
        "web client": re.findall(
            r'"@bufbuild/buf": "([\d.]+)"', (REPO / "clients/web/client/package.json").read_text()
        ),
    }
    assert {v for found in pins.values() for v in found} == {"1.75.0"}, pins
    assert all(pins.values()), pins


DOCS_SCRIPT = REPO / "scripts" / "gen-api-docs.sh"


def api_reference_check(checkout: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DOCS_SCRIPT), "--check", str(checkout)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_api_reference_is_what_the_protos_make_and_a_changed_comment_makes_it_stale(
    scratch: Scratch,
) -> None:
    if shutil.which("go") is None and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        pytest.skip("go is not installed (it installs protoc-gen-doc)")
    shutil.copytree(REPO / "docs" / "api", scratch.root / "docs" / "api")
    fresh = api_reference_check(scratch.root)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    scratch.edit(API, LIST_TICKETS, LIST_TICKETS + "Kept for a year. ")
    stale = api_reference_check(scratch.root)
    assert stale.returncode != 0
    assert "docs/api/ is stale" in stale.stderr
    assert "Kept for a year." in stale.stderr  # the diff shows what changed


def test_the_lint_checks_the_api_reference() -> None:
    recipe = (REPO / "justfile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "bash scripts/gen-api-docs.sh --check" in recipe
