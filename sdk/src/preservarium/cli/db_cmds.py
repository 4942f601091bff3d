"""`preservarium db ...`"""

from __future__ import annotations

import typer

from preservarium.cli.common import console, run, settings
from preservarium.db.migrate import upgrade

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the schema migrations."""
    config = settings()
    current = run(lambda: upgrade(config.database_url, revision))
    console.print(f"database at revision {current}")
