"""`preservarium db ...`"""

from __future__ import annotations

import typer

from preservarium_tools.cli.common import console, fail, print_json, run, settings

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(
    revision: str = typer.Argument("head", help="Target revision."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Create the database if needed and apply the schema migrations.

    The database is PRESERVARIUM_DATABASE_URL; by default SQLite in PRESERVARIUM_DATA_DIR
    ($XDG_DATA_HOME/preservarium, else ~/.local/share/preservarium).
    """
    from preservarium.db.migrate import upgrade
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from preservarium_tools.cli.database import location

    config = settings()
    try:
        current = run(lambda: upgrade(config.database_url, revision))
    except (SQLAlchemyError, OSError) as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        fail(f"cannot migrate the database at {location(config.database_url)}: {reason}", 2)
    if as_json:
        shown = make_url(config.database_url).render_as_string(hide_password=True)
        print_json({"revision": current, "database_url": shown})
        return
    console.print(
        f"database at revision {current}: {location(config.database_url)}",
        highlight=False,
        soft_wrap=True,
    )
