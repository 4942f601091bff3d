"""`preservarium device ...`: the device registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from preservarium_tools.cli.common import (
    console,
    fail,
    print_json,
    run,
    settings,
    stored_in,
    when,
)
from preservarium_tools.cli.database import migrated_database
from preservarium_tools.cli.device_credentials import (
    AUTH_HELP,
    AuthChoice,
    auth_kind,
    auth_option,
    credentials,
    parse_attributes,
    show_document,
    summary_line,
)
from preservarium_tools.cli.device_import_cmd import import_file

if TYPE_CHECKING:
    from preservarium.identity import SecretBox
    from preservarium.identity.documents import CredentialDocument
    from preservarium.repositories import DeviceRecord
    from preservarium.settings import Settings
    from preservarium.usecases.devices import DeviceView

app = typer.Typer(help="Register and inspect devices.", no_args_is_help=True)
app.command("credentials")(credentials)
app.command("import")(import_file)
JSON = typer.Option(False, "--json", help="Machine-readable output.")
FORCE_TYPE = typer.Option(
    False, "--force", help="Accept a type that has no active parser yet (upload one before use)."
)


def _device_json(record: DeviceRecord) -> dict[str, Any]:
    from preservarium.usecases.devices import device_json

    return device_json(record)


def secret_box(config: Settings) -> SecretBox:
    """The secret box of the settings' PRESERVARIUM_SECRET_KEY (empty when unset)."""
    from preservarium.identity import SecretBox

    key = config.secret_key.get_secret_value() if config.secret_key is not None else None
    return SecretBox.from_setting(key)


@app.command("register")
def register(
    device_id: str = typer.Argument(..., metavar="ID"),
    device_type: str = typer.Option(..., "--type", help="Device type; names the parser."),
    auth_value: AuthChoice = auth_option(AuthChoice.NONE, AUTH_HELP),
    attr: list[str] = typer.Option([], "--attr", help="An attribute KEY=VALUE (repeatable)."),
    force: bool = FORCE_TYPE,
    as_json: bool = JSON,
) -> None:
    """Register a device reached on /d/ID, with generated credentials (printed once). Its
    type must have an active parser, unless --force. (Devices reached on a route need no
    registration: the route gives the type; register them to give them credentials.)"""
    attributes = parse_attributes(attr)
    config = settings()
    auth = auth_kind(auth_value)

    async def body() -> tuple[DeviceRecord, CredentialDocument]:
        from preservarium.usecases.devices import register_device

        async with migrated_database(config) as engine:
            return await register_device(
                engine, secret_box(config), device_id=device_id, device_type=device_type,
                auth=auth, attributes=attributes, force=force,
            )  # fmt: skip

    record, document = run(body)
    stored_in(config)
    if not as_json:
        console.print(
            f"registered {record.id} (type {record.device_type}, auth {auth.value})",
            highlight=False,
        )
    show_document(document, as_json=as_json, extra=_device_json(record))


@app.command("update")
def update(
    device_id: str = typer.Argument(..., metavar="ID"),
    device_type: str | None = typer.Option(None, "--type", help="The device's new type."),
    attr: list[str] = typer.Option([], "--attr", help="Set an attribute KEY=VALUE (repeatable)."),
    unset_attr: list[str] = typer.Option(
        [], "--unset-attr", metavar="KEY", help="Remove an attribute (repeatable)."
    ),
    clear_attrs: bool = typer.Option(
        False, "--clear-attrs", help="Remove every attribute first (then apply --attr)."
    ),
    force: bool = FORCE_TYPE,
    as_json: bool = JSON,
) -> None:
    """Change a registered device's type or attributes (its next contact uses the new type's
    parser; parsers see new attributes within seconds)."""
    from preservarium.usecases.devices import check_device_id, check_device_type

    check_device_id(device_id)
    if device_type is not None:
        check_device_type(device_type)
    attributes = parse_attributes(attr)
    changes_attributes = bool(attributes or unset_attr or clear_attrs)
    if device_type is None and not changes_attributes:
        fail("nothing to change: give --type, --attr, --unset-attr or --clear-attrs")
    config = settings()

    async def body() -> DeviceRecord:
        from preservarium.usecases.devices import update_device

        async with migrated_database(config) as engine:
            return await update_device(
                engine, device_id=device_id, device_type=device_type,
                set_attributes=attributes, unset_attributes=tuple(unset_attr),
                attributes=attributes if clear_attrs else None, force=force,
            )  # fmt: skip

    record = run(body)
    stored_in(config)
    if as_json:
        print_json(_device_json(record))
    elif device_type is not None:
        console.print(f"{record.id} now has type {record.device_type}", highlight=False)
    if not as_json and changes_attributes:
        console.print(f"{record.id} now has {len(record.attributes)} attribute(s)", highlight=False)


@app.command("list")
def list_devices(as_json: bool = JSON) -> None:
    """List registered devices."""
    config = settings()

    async def body() -> list[DeviceRecord]:
        from preservarium.repositories import SQLDeviceRepository

        async with migrated_database(config) as engine:
            return await SQLDeviceRepository(engine).list()

    records = run(body)
    if as_json:
        print_json([_device_json(record) for record in records])
        return
    table = Table("device id", "type", "registered")
    for record in records:
        table.add_row(record.id, record.device_type, when(record.created_at))
    console.print(table)


@app.command("show")
def show(device_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON) -> None:
    """Show one device, how it authenticates (never the secret) and its waiting commands."""
    config = settings()

    async def body() -> DeviceView:
        from preservarium.usecases.devices import show_device

        async with migrated_database(config) as engine:
            return await show_device(engine, secret_box(config), device_id)

    view = run(body)
    record, summary, pending = view.device, view.credentials, view.pending
    if as_json:
        from preservarium.usecases.devices import view_json

        print_json(view_json(view))
        return
    console.print(
        f"{record.id}  type {record.device_type}  registered {when(record.created_at)}  "
        f"{summary_line(summary)}",
        highlight=False,
    )
    console.print(f"last contact {when(view.last_contact_at)}", highlight=False)
    if record.attributes:
        pairs = "  ".join(f"{key}={value}" for key, value in sorted(record.attributes.items()))
        console.print(f"attributes  {pairs}", highlight=False, markup=False)
    if not pending:
        console.print("no pending commands", highlight=False)
        return
    from preservarium_tools.cli.command_list import command_table

    console.print(f"{len(pending)} pending (oldest sent first):", highlight=False)
    console.print(command_table(list(reversed(pending))))


@app.command("remove")
def remove(device_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON) -> None:
    """Forget a device."""
    config = settings()

    async def body() -> None:
        from preservarium.repositories import SQLDeviceRepository

        async with migrated_database(config) as engine:
            await SQLDeviceRepository(engine).remove(device_id)

    run(body)
    stored_in(config)
    if as_json:
        print_json({"id": device_id, "removed": True})
    else:
        console.print(f"removed {device_id}", highlight=False)
