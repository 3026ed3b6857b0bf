"""The reports application: filing, triage, decisions and their consequences,
the trusted-flagger list, and what it answers. `Reports` joins the use cases,
each in a module of its own:

- `filing`: a report and the case it joins (`file`);
- `decisions`: agents' work on a case (`assign`, `decide`, `void`) and an
  upheld appeal's consequences (`lodge_appeal`, `reverse`);
- `flaggers`: the trusted-flagger list (`set_flagger`, `remove_flagger`,
  `list_flaggers`);
- `retention`: an ended case's personal data erased when its retention
  period runs out (`deadlines_of`, `fire`: its timer's);
- `queries`: reads (`get_report`, `list_reports`, `get_case`, `list_cases`,
  `my_restrictions`, `transparency`);
- `base`: what they share (construction, who may see a case, loading, saving).

The rules they apply live in the domain: the aggregates (`domain`), the
statement of reasons (`statement`) and what a report may name (`targets`).
"""

from __future__ import annotations

from casemesh.platform.clock import Clock
from casemesh.platform.eventstore import postgres_env, schema_lock, side_table
from casemesh.platform.personal import Sealer
from casemesh_reports.decisions import Decisions
from casemesh_reports.domain import ReportCase
from casemesh_reports.filing import Filing, ReportDraft
from casemesh_reports.flaggers import Flaggers
from casemesh_reports.policy import ReportsPolicy
from casemesh_reports.queries import Queries
from casemesh_reports.retention import Retention
from casemesh_reports.views import ReportsView

__all__ = ["ReportDraft", "Reports", "open_reports"]


class Reports(Filing, Decisions, Flaggers, Queries, Retention):
    """On PostgreSQL, open with `open_reports`, which keeps the view its lists
    are read from in the service's database; constructed bare, it runs whole
    in memory, its view too (the application tests)."""

    # Named here: the event-sourcing library names an application after its
    # class unless the class itself says otherwise.
    name = "reports"
    # The cases it keeps, for what every case service does alike.
    case_type = ReportCase
    collection = "report-cases"
    ascii_fingerprints = True


def open_reports(
    database_url: str,
    *,
    clock: Clock,
    policy: ReportsPolicy,
    link_hosts: tuple[str, ...] = (),
    pool_size: int = 10,
    sealer: Sealer | None = None,
    reveal_personal: bool = True,
) -> Reports:
    """Reports on PostgreSQL, its view in the same database; given a `sealer`,
    personal fields are stored sealed (`reveal_personal=False`: read back as
    tokens, for the relay)."""
    triage = policy.taxonomy.triage
    with schema_lock(database_url):
        return Reports(
            env=postgres_env(database_url, pool_size=pool_size),
            clock=clock,
            policy=policy,
            link_hosts=link_hosts,
            open_view=lambda app: side_table(app, lambda datastore: ReportsView(datastore, triage)),
            sealer=sealer,
            reveal_personal=reveal_personal,
        )
