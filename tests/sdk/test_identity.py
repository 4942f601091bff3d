"""Device identity without a database: generation, documents, tokens, sealing, replay windows."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from aiocoap import oscore
from preservarium.errors import ConfigError, SecretKeyError
from preservarium.identity import (
    AuthKind,
    NoCredentialDocument,
    OscoreDocument,
    PskDocument,
    ReplayWindow,
    SecretBox,
    TokenDocument,
    generate,
)
from preservarium.identity.kinds import DTLS_PSK_MAX_BYTES
from preservarium.identity.tokens import token_hash, token_matches
from preservarium.settings import load_settings

KEY_A = "a" * 16 + "-first-secret-key-for-tests"
KEY_B = "b" * 16 + "-second-secret-key-for-tests"


class TestGeneration:
    def test_token_is_url_safe_with_256_bits(self) -> None:
        token = generate.new_token()
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
        assert len(base64.urlsafe_b64decode(token + "=")) == 32

    def test_psk_is_printable_and_as_strong_as_tinydtls_allows(self) -> None:
        psk = generate.new_psk()
        assert psk.isprintable() and psk.isascii() and " " not in psk
        assert len(psk.encode()) == DTLS_PSK_MAX_BYTES == 16
        assert set(psk) <= set(generate.PSK_ALPHABET)
        alphabet = len(set(generate.PSK_ALPHABET))
        assert len(psk) * math.log2(alphabet) == 96
        assert len({generate.new_psk() for _ in range(100)}) == 100

    def test_oscore_material_fits_aiocoap(self) -> None:
        material = generate.new_oscore_material()
        assert material.sender_id != material.recipient_id
        assert len(material.master_secret) >= 16 and len(material.master_salt) == 8
        assert material.algorithm in oscore.algorithms
        assert material.hkdf in oscore.hashfunctions
        # An id longer than nonce length - 6 cannot be used with the algorithm.
        limit = oscore.algorithms[material.algorithm].iv_bytes - 6
        assert len(material.sender_id) <= limit and len(material.recipient_id) <= limit


class TestDocuments:
    def test_token_shape(self) -> None:
        assert TokenDocument("d1", "tok").to_json() == {
            "device_id": "d1",
            "auth": "token",
            "token": "tok",
        }

    def test_psk_shape_carries_text_and_hex(self) -> None:
        document = PskDocument("d1", "key-Text_1").to_json()
        assert document == {
            "device_id": "d1",
            "auth": "psk",
            "psk_identity": "d1",
            "psk": "key-Text_1",
            "psk_hex": b"key-Text_1".hex(),
        }

    def test_oscore_shape_is_from_the_devices_view(self) -> None:
        material = generate.new_oscore_material()
        document = json.loads(json.dumps(OscoreDocument("d1", material).to_json()))
        assert set(document) == {"device_id", "auth", "oscore"}
        assert document["auth"] == "oscore"
        assert document["oscore"] == {
            "sender_id_hex": material.sender_id.hex(),
            "recipient_id_hex": material.recipient_id.hex(),
            "master_secret_hex": material.master_secret.hex(),
            "master_salt_hex": material.master_salt.hex(),
            "algorithm": "AES-CCM-16-64-128",
            "hkdf": "sha256",
        }

    def test_none_has_no_secret(self) -> None:
        assert NoCredentialDocument("d1").to_json() == {"device_id": "d1", "auth": "none"}

    def test_only_psk_and_oscore_keep_secrets_at_rest(self) -> None:
        assert {kind for kind in AuthKind if kind.has_secret_at_rest} == {
            AuthKind.PSK,
            AuthKind.OSCORE,
        }


class TestTokens:
    def test_stored_form_is_a_hash(self) -> None:
        token = generate.new_token()
        stored = token_hash(token)
        assert token not in stored and re.fullmatch(r"[0-9a-f]{64}", stored)
        assert token_matches(token, stored)
        assert not token_matches(token[:-1], stored)
        assert not token_matches("", stored)


class TestSecretBox:
    def test_round_trip_and_no_plaintext_at_rest(self) -> None:
        box = SecretBox([KEY_A])
        sealed = box.seal(b"the-psk-text", context="psk:d1")
        assert b"the-psk-text" not in sealed.encode()
        assert "the-psk-text" not in base64.urlsafe_b64decode(sealed.split(":")[2]).decode(
            errors="replace"
        )
        assert box.open(sealed, context="psk:d1") == b"the-psk-text"
        assert box.seal(b"x", context="c") != box.seal(b"x", context="c")  # fresh nonces

    def test_a_secret_is_bound_to_its_device(self) -> None:
        box = SecretBox([KEY_A])
        sealed = box.seal(b"secret", context="psk:d1")
        with pytest.raises(SecretKeyError) as caught:
            box.open(sealed, context="psk:d2")
        assert caught.value.kind == "damaged"

    def test_altered_ciphertext_is_refused(self) -> None:
        box = SecretBox([KEY_A])
        version, key_id, body = box.seal(b"secret", context="c").split(":")
        raw = bytearray(base64.urlsafe_b64decode(body))
        raw[-1] ^= 1
        altered = f"{version}:{key_id}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
        with pytest.raises(SecretKeyError) as caught:
            box.open(altered, context="c")
        assert caught.value.kind == "damaged"

    def test_no_key_refuses_to_seal(self) -> None:
        box = SecretBox.from_setting(None)
        assert not box.has_key
        with pytest.raises(SecretKeyError) as caught:
            box.seal(b"secret", context="c")
        assert caught.value.kind == "no_key"

    def test_rotation_old_keys_open_new_key_seals(self) -> None:
        old = SecretBox([KEY_A]).seal(b"secret", context="c")
        rotated = SecretBox.from_setting(f"{KEY_B}, {KEY_A}")
        assert rotated.open(old, context="c") == b"secret"
        assert SecretBox.key_id_of(old) != rotated.current_key_id
        assert SecretBox.key_id_of(rotated.seal(b"s", context="c")) == rotated.current_key_id
        with pytest.raises(SecretKeyError) as caught:
            SecretBox([KEY_B]).open(old, context="c")
        assert caught.value.kind == "unknown_key"

    def test_key_id_does_not_depend_on_position_and_names_the_key(self) -> None:
        assert SecretBox([KEY_A]).current_key_id == SecretBox([KEY_A, KEY_B]).current_key_id
        assert SecretBox([KEY_A]).current_key_id != SecretBox([KEY_B]).current_key_id


class TestSecretKeySetting:
    def test_absent_or_empty_is_none(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("PRESERVARIUM_SECRET_KEY", raising=False)
        assert load_settings().secret_key is None
        monkeypatch.setenv("PRESERVARIUM_SECRET_KEY", "")
        assert load_settings().secret_key is None

    def test_keys_are_read_and_never_shown(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PRESERVARIUM_SECRET_KEY", f"{KEY_B},{KEY_A}")
        settings = load_settings()
        assert settings.secret_key is not None
        assert KEY_A not in repr(settings) and KEY_A not in str(settings.secret_key)
        box = SecretBox.from_setting(settings.secret_key.get_secret_value())
        assert box.current_key_id == SecretBox([KEY_B]).current_key_id

    def test_a_short_key_is_one_clear_line(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PRESERVARIUM_SECRET_KEY", f"{KEY_A},short")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        message = str(caught.value)
        assert message.startswith("PRESERVARIUM_SECRET_KEY: key 2 has 5 characters")
        assert "short" not in message and KEY_A not in message and "\n" not in message


class TestReplayWindow:
    def test_each_number_once(self) -> None:
        window = ReplayWindow()
        for seq in (5, 0, 1, 2):
            assert window.is_fresh(seq)
            window = window.seen(seq)
            assert not window.is_fresh(seq)
        assert window.is_fresh(3) and window.is_fresh(4)
        with pytest.raises(ValueError):
            window.seen(5)

    def test_jumping_ahead_slides_the_window(self) -> None:
        window = ReplayWindow().seen(4).seen(35)  # 35 keeps 4..35 in a 32-wide window
        assert (window.floor, window.is_fresh(3), window.is_fresh(4), window.is_fresh(5)) == (
            4,
            False,
            False,
            True,
        )
        moved = window.seen(36)
        assert (moved.floor, moved.is_fresh(4), moved.is_fresh(5), moved.is_fresh(36)) == (
            5,
            False,
            True,
            False,
        )

    def test_persisted_form_seeds_aiocoaps_window(self) -> None:
        ours = ReplayWindow().seen(3).seen(40).seen(20)
        theirs = oscore.ReplayWindow(ours.size, lambda: None)
        theirs.initialize_from_persisted({"index": ours.floor, "bitfield": ours.bitmap})
        assert [theirs.is_valid(n) for n in range(80)] == [ours.is_fresh(n) for n in range(80)]


def _filesystem_context(
    directory: Path, *, sender: str, recipient: str, oscore_doc: dict[str, str]
) -> Any:
    """An aiocoap context from the document's fields (aiocoap reads them from files)."""
    directory.mkdir()
    (directory / "settings.json").write_text(
        json.dumps(
            {
                "sender-id_hex": sender,
                "recipient-id_hex": recipient,
                "algorithm": oscore_doc["algorithm"],
                "kdf-hashfun": oscore_doc["hkdf"],
            }
        )
    )
    (directory / "secret.json").write_text(
        json.dumps(
            {
                "secret_hex": oscore_doc["master_secret_hex"],
                "salt_hex": oscore_doc["master_salt_hex"],
            }
        )
    )
    return oscore.FilesystemSecurityContext(str(directory))


def test_the_oscore_document_is_the_devices_side_of_the_gateways_context(tmp_path: Path) -> None:
    document = OscoreDocument("d1", generate.new_oscore_material()).to_json()["oscore"]
    sender, recipient = document["sender_id_hex"], document["recipient_id_hex"]
    device = _filesystem_context(
        tmp_path / "device", sender=sender, recipient=recipient, oscore_doc=document
    )
    gateway = _filesystem_context(
        tmp_path / "gateway", sender=recipient, recipient=sender, oscore_doc=document
    )
    request = aiocoap.Message(code=aiocoap.POST, uri="coap://gateway/d/d1", payload=b"reading")
    protected, _ = device.protect(request)
    unprotected_request, request_id = gateway.unprotect(over_the_wire(protected))
    assert unprotected_request.payload == b"reading"
    assert request_id.kid == bytes.fromhex(sender)  # the kid the gateway looks the device up by
    response = aiocoap.Message(code=aiocoap.CREATED, payload=b"command")
    protected_response, _ = gateway.protect(response, request_id)
    answer = device.unprotect(over_the_wire(protected_response), request_id)[0]
    assert answer.payload == b"command"


def over_the_wire(message: aiocoap.Message) -> aiocoap.Message:
    """The message as its receiver decodes it."""
    message.mid, message.token, message.mtype = 1, b"t", aiocoap.CON
    return aiocoap.Message.decode(message.encode())
