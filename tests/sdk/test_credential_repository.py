"""Device credentials and OSCORE replay windows on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from preservarium.db.models import DeviceCredential, utcnow
from preservarium.errors import ConflictError, CredentialError, NotFoundError, SecretKeyError
from preservarium.identity import AuthKind, SecretBox, generate
from preservarium.identity.kinds import OscoreMaterial
from preservarium.repositories import SQLDeviceRepository
from preservarium.repositories.credentials import SQLCredentialRepository
from preservarium.repositories.replay_windows import SQLReplayWindowRepository
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sdk.test_identity import KEY_A, KEY_B


@pytest.fixture
async def credentials(engine: AsyncEngine) -> SQLCredentialRepository:
    devices = SQLDeviceRepository(engine)
    for device_id in ("d1", "d2", "d3"):
        await devices.register(device_id, "generic")
    return SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))


async def stored(engine: AsyncEngine, device_id: str) -> DeviceCredential:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(DeviceCredential.__table__).where(DeviceCredential.device_id == device_id)
            )
        ).one()
    return DeviceCredential(**row._mapping)


class TestTokens:
    async def test_right_wrong_and_missing(self, credentials: SQLCredentialRepository) -> None:
        document = (await credentials.set_credentials("d1", AuthKind.TOKEN)).to_json()
        token = document["token"]
        assert await credentials.verify_token("d1", token)
        assert not await credentials.verify_token("d1", token[:-1] + "x")
        assert not await credentials.verify_token("d1", "")
        assert not await credentials.verify_token("d2", token)  # d2 has no token
        assert not await credentials.verify_token("nobody", token)

    async def test_only_a_hash_is_stored(
        self, credentials: SQLCredentialRepository, engine: AsyncEngine
    ) -> None:
        token = (await credentials.set_credentials("d1", AuthKind.TOKEN)).to_json()["token"]
        row = await stored(engine, "d1")
        assert row.token_sha256 is not None and token not in row.token_sha256
        assert row.sealed_secret is None

    async def test_rotation_revokes_the_old_token(
        self, credentials: SQLCredentialRepository
    ) -> None:
        old = (await credentials.set_credentials("d1", AuthKind.TOKEN)).to_json()["token"]
        new = (await credentials.rotate("d1")).to_json()["token"]
        assert old != new
        assert await credentials.verify_token("d1", new)
        assert not await credentials.verify_token("d1", old)


class TestPsk:
    async def test_lookup_by_identity_returns_the_printed_key(
        self, credentials: SQLCredentialRepository, engine: AsyncEngine
    ) -> None:
        document = (await credentials.set_credentials("d1", AuthKind.PSK)).to_json()
        assert document["psk_identity"] == "d1"
        assert bytes.fromhex(document["psk_hex"]) == document["psk"].encode()
        assert await credentials.psk_for_identity("d1") == document["psk"].encode()
        assert await credentials.all_psks() == {"d1": document["psk"].encode()}
        assert await credentials.psk_for_identity("d2") is None
        row = await stored(engine, "d1")
        assert row.sealed_secret is not None and document["psk"] not in row.sealed_secret

    async def test_without_a_key_psk_and_oscore_are_refused(self, engine: AsyncEngine) -> None:
        await SQLDeviceRepository(engine).register("d1", "generic")
        keyless = SQLCredentialRepository(engine, secrets=SecretBox([]))
        for kind in (AuthKind.PSK, AuthKind.OSCORE):
            with pytest.raises(SecretKeyError) as caught:
                await keyless.set_credentials("d1", kind)
            assert caught.value.kind == "no_key"
        assert (await keyless.summary("d1")).auth is AuthKind.NONE
        await keyless.set_credentials("d1", AuthKind.TOKEN)  # needs no key

    async def test_an_identity_longer_than_dtls_allows_is_refused(
        self, credentials: SQLCredentialRepository
    ) -> None:
        long_id = "x" * 33
        await SQLDeviceRepository(credentials.engine).register(long_id, "generic")
        with pytest.raises(CredentialError) as caught:
            await credentials.set_credentials(long_id, AuthKind.PSK)
        assert caught.value.kind == "psk_identity_too_long"
        await SQLDeviceRepository(credentials.engine).register("y" * 32, "generic")
        await credentials.set_credentials("y" * 32, AuthKind.PSK)
        await credentials.set_credentials(long_id, AuthKind.OSCORE)  # only DTLS has the limit

    async def test_a_token_device_has_no_psk(self, credentials: SQLCredentialRepository) -> None:
        await credentials.set_credentials("d1", AuthKind.TOKEN)
        assert await credentials.psk_for_identity("d1") is None


class TestOscore:
    async def test_lookup_by_kid_gives_the_devices_context(
        self, credentials: SQLCredentialRepository
    ) -> None:
        document = (await credentials.set_credentials("d1", AuthKind.OSCORE)).to_json()["oscore"]
        kid = bytes.fromhex(document["sender_id_hex"])
        found = await credentials.oscore_for_kid(kid)
        assert found is not None and found.device_id == "d1"
        assert found.material == OscoreMaterial(
            sender_id=kid,
            recipient_id=bytes.fromhex(document["recipient_id_hex"]),
            master_secret=bytes.fromhex(document["master_secret_hex"]),
            master_salt=bytes.fromhex(document["master_salt_hex"]),
            algorithm=document["algorithm"],
            hkdf=document["hkdf"],
        )
        assert await credentials.oscore_for_kid(bytes.fromhex(document["recipient_id_hex"])) is None

    async def test_a_kid_names_one_device(
        self, credentials: SQLCredentialRepository, engine: AsyncEngine
    ) -> None:
        await credentials.set_credentials("d1", AuthKind.OSCORE)
        await credentials.set_credentials("d2", AuthKind.OSCORE)
        kid = (await stored(engine, "d1")).oscore_kid
        with pytest.raises(ConflictError):
            async with credentials.transaction() as session:
                await session.execute(
                    update(DeviceCredential)
                    .where(DeviceCredential.device_id == "d2")
                    .values(oscore_kid=kid)
                )

    async def test_a_colliding_fresh_kid_is_drawn_again(
        self, credentials: SQLCredentialRepository, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        first = (await credentials.set_credentials("d1", AuthKind.OSCORE)).to_json()["oscore"]
        taken = bytes.fromhex(first["sender_id_hex"])
        draws = iter([taken, bytes.fromhex("aa" * 6), bytes.fromhex("bb" * 6)])
        fresh = generate.new_oscore_material

        def colliding() -> OscoreMaterial:
            material = fresh()
            return OscoreMaterial(
                next(draws, material.sender_id), b"\x01", material.master_secret, b"\x02" * 8
            )

        monkeypatch.setattr(generate, "new_oscore_material", colliding)
        second = (await credentials.set_credentials("d2", AuthKind.OSCORE)).to_json()["oscore"]
        assert second["sender_id_hex"] == "aa" * 6
        found = await credentials.oscore_for_kid(taken)
        assert found is not None and found.device_id == "d1"


class TestRegistry:
    async def test_unregistered_device_is_not_found(
        self, credentials: SQLCredentialRepository
    ) -> None:
        for kind in AuthKind:
            with pytest.raises(NotFoundError):
                await credentials.set_credentials("ghost", kind)
        with pytest.raises(NotFoundError):
            await credentials.rotate("ghost")
        with pytest.raises(NotFoundError):
            await credentials.summary("ghost")

    async def test_summary_and_last_authenticated(
        self, credentials: SQLCredentialRepository
    ) -> None:
        assert (await credentials.summary("d1")).auth is AuthKind.NONE
        await credentials.set_credentials("d1", AuthKind.PSK)
        summary = await credentials.summary("d1")
        assert (summary.auth, summary.last_authenticated_at) == (AuthKind.PSK, None)
        first = utcnow()
        await credentials.mark_authenticated("d1", at=first)
        await credentials.mark_authenticated("d1", at=first + timedelta(seconds=5))
        assert (await credentials.summary("d1")).last_authenticated_at == first
        later = first + timedelta(seconds=61)
        await credentials.mark_authenticated("d1", at=later)
        assert (await credentials.summary("d1")).last_authenticated_at == later

    async def test_changing_kind_clears_the_old_secret(
        self, credentials: SQLCredentialRepository, engine: AsyncEngine
    ) -> None:
        await credentials.set_credentials("d1", AuthKind.OSCORE)
        kid = bytes.fromhex((await stored(engine, "d1")).oscore_kid or "")
        await credentials.set_credentials("d1", AuthKind.NONE)
        row = await stored(engine, "d1")
        assert (row.auth, row.sealed_secret, row.oscore_kid) == ("none", None, None)
        assert await credentials.oscore_for_kid(kid) is None
        with pytest.raises(NotFoundError):
            await SQLReplayWindowRepository(engine).window(kid)

    async def test_removing_the_device_removes_its_credentials(
        self, credentials: SQLCredentialRepository, engine: AsyncEngine
    ) -> None:
        await credentials.set_credentials("d1", AuthKind.PSK)
        await SQLDeviceRepository(engine).remove("d1")
        assert await credentials.psk_for_identity("d1") is None


class TestKeyRotation:
    async def test_reseal_moves_every_secret_to_the_new_key(
        self, credentials: SQLCredentialRepository, engine: AsyncEngine
    ) -> None:
        psk = (await credentials.set_credentials("d1", AuthKind.PSK)).to_json()["psk"]
        oscore = (await credentials.set_credentials("d2", AuthKind.OSCORE)).to_json()["oscore"]
        await credentials.set_credentials("d3", AuthKind.TOKEN)
        rotated = SQLCredentialRepository(engine, secrets=SecretBox([KEY_B, KEY_A]))
        assert await rotated.psk_for_identity("d1") == psk.encode()  # old key still opens
        assert await rotated.reseal_all() == 2
        assert await rotated.reseal_all() == 0
        new_only = SQLCredentialRepository(engine, secrets=SecretBox([KEY_B]))
        assert await new_only.psk_for_identity("d1") == psk.encode()
        found = await new_only.oscore_for_kid(bytes.fromhex(oscore["sender_id_hex"]))
        assert (
            found is not None and found.material.master_secret.hex() == oscore["master_secret_hex"]
        )
        with pytest.raises(SecretKeyError) as caught:
            await credentials.psk_for_identity("d1")  # the old key alone no longer opens
        assert caught.value.kind == "unknown_key"


class TestReplayWindows:
    async def kid_of_new_context(self, credentials: SQLCredentialRepository) -> bytes:
        document = (await credentials.set_credentials("d1", AuthKind.OSCORE)).to_json()
        return bytes.fromhex(document["oscore"]["sender_id_hex"])

    async def test_a_sequence_number_is_accepted_once(
        self, credentials: SQLCredentialRepository, engine: AsyncEngine
    ) -> None:
        kid = await self.kid_of_new_context(credentials)
        windows = SQLReplayWindowRepository(engine)
        assert [await windows.accept(kid, seq) for seq in (0, 2, 1, 2, 0, 40, 5)] == [
            True,
            True,
            True,
            False,
            False,
            True,
            False,  # 40 slid the window past 5
        ]
        with pytest.raises(NotFoundError):
            await windows.accept(b"\xff" * 6, 0)

    async def test_a_restarted_gateway_still_refuses(
        self, credentials: SQLCredentialRepository, database_url: str
    ) -> None:
        from preservarium.db.engine import make_engine

        kid = await self.kid_of_new_context(credentials)
        for expected in (True, False):
            restarted = make_engine(database_url)
            try:
                assert await SQLReplayWindowRepository(restarted).accept(kid, 7) is expected
            finally:
                await restarted.dispose()

    async def test_concurrent_gateways_accept_each_number_exactly_once(
        self, credentials: SQLCredentialRepository, database_url: str
    ) -> None:
        from preservarium.db.engine import make_engine

        kid = await self.kid_of_new_context(credentials)
        gateways = [make_engine(database_url) for _ in range(2)]
        try:
            windows = [SQLReplayWindowRepository(engine) for engine in gateways]
            # Both gateways are handed every message (a replay to each), all at once.
            attempts = [w.accept(kid, seq) for seq in range(12) for w in windows]
            verdicts = await asyncio.gather(*attempts)
        finally:
            for engine in gateways:
                await engine.dispose()
        per_seq = [verdicts[i : i + 2] for i in range(0, len(verdicts), 2)]
        assert all(sorted(pair) == [False, True] for pair in per_seq), per_seq
        final = await SQLReplayWindowRepository(credentials.engine).window(kid)
        assert not any(final.is_fresh(seq) for seq in range(12))

    async def test_advancing_from_a_held_window_writes_once_and_a_stale_one_rereads(
        self, credentials: SQLCredentialRepository, engine: AsyncEngine
    ) -> None:
        kid = await self.kid_of_new_context(credentials)
        mine, other = SQLReplayWindowRepository(engine), SQLReplayWindowRepository(engine)
        held = await mine.state(kid)
        fresh, held = await mine.advance(kid, 1, held)
        assert fresh and held.version == 1
        assert await other.accept(kid, 2)  # another gateway moves the window
        # The held window (version 1) has not seen 2: the write misses, the re-read refuses.
        assert (await mine.advance(kid, 2, held))[0] is False
        fresh, held = await mine.advance(kid, 3, held)
        assert fresh and held == await mine.state(kid)
        await credentials.rotate("d1")  # the window goes with the old context
        with pytest.raises(NotFoundError):
            await mine.advance(kid, 4, held)


class TestAuthEntries:
    """What a gateway holds in memory per device: the kind and a token's hash only."""

    async def test_every_device_with_credentials_and_one_at_a_time(
        self, credentials: SQLCredentialRepository
    ) -> None:
        from preservarium.identity.tokens import token_matches

        token = (await credentials.set_credentials("d1", AuthKind.TOKEN)).to_json()["token"]
        await credentials.set_credentials("d2", AuthKind.PSK)
        entries = await credentials.auth_entries()
        assert set(entries) == {"d1", "d2"}
        assert entries["d1"].auth is AuthKind.TOKEN and entries["d1"].token_sha256
        assert token_matches(token, entries["d1"].token_sha256)
        assert entries["d2"].auth is AuthKind.PSK and entries["d2"].token_sha256 is None
        assert await credentials.auth_entry("d1") == entries["d1"]
        assert (await credentials.auth_entry("d3")).auth is AuthKind.NONE


async def test_device_attributes_are_stored_as_an_object(engine: AsyncEngine) -> None:
    devices = SQLDeviceRepository(engine)
    await devices.register("a1", "generic", attributes={"site": "north", "floor": "2"})
    await devices.register("a2", "generic")
    assert (await devices.get("a1")).attributes == {"site": "north", "floor": "2"}
    assert (await devices.get("a2")).attributes == {}
