"""`preservarium-migrate`: apply the schema migrations to PRESERVARIUM_DATABASE_URL, then exit.

The services' images run it as compose's one-shot `migrate` step: they carry the SDK (and
its migrations) but not the `preservarium` command, whose `db upgrade` does the same thing
with more options. A bad setting or an unreachable database is one line and exit status 2.
"""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from preservarium.db.migrate import upgrade
from preservarium.errors import PreservariumError
from preservarium.settings import load_settings

NAME = "preservarium-migrate"


def main() -> None:
    """Console-script entry point."""
    try:
        settings = load_settings()
    except PreservariumError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    try:
        revision = asyncio.run(upgrade(settings.database_url))
    except (SQLAlchemyError, OSError) as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        print(f"{NAME}: cannot migrate the database at {shown}: {reason}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"database at revision {revision}: {shown}")
