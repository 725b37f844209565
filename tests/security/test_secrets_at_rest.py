"""Secrets at rest: Fernet under operator keys, bound to their row, rotatable; redacted in logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import create_engine, select

from api import admin
from api.app import create_app
from api.app_state import app_engine
from core.logs import LogStore
from core.models import RunSecret
from core.secrets.encryption import SecretUnreadable, cipher_for
from core.settings import Environment, Settings, get_settings
from tests.factories import make_tenant
from tests.support.secrets import canary, set_secret

KEY_A = "a" * 16 + "first-operator-key-of-32-chars"
KEY_B = "b" * 16 + "second-operator-key-of-32-chars"


def test_a_ciphertext_moved_to_another_org_does_not_decrypt() -> None:
    cipher = cipher_for(Settings(secrets_key=KEY_A))
    token = cipher.encrypt("org_a", "", "wandb", "value-of-a")
    assert cipher.decrypt("org_a", "", "wandb", token) == "value-of-a"
    for org, project, name in (("org_b", "", "wandb"), ("org_a", "prj_x", "wandb")):
        with pytest.raises(SecretUnreadable):
            cipher.decrypt(org, project, name, token)
    assert "value-of-a" not in token


def test_a_new_key_first_still_reads_old_values_and_reencrypting_retires_the_old_key() -> None:
    old = cipher_for(Settings(secrets_key=KEY_A))
    token = old.encrypt("org_a", "", "wandb", "v")
    both = cipher_for(Settings(secrets_key=f"{KEY_B},{KEY_A}"))
    assert both.decrypt("org_a", "", "wandb", token) == "v"
    newer = both.reencrypt(token)
    assert cipher_for(Settings(secrets_key=KEY_B)).decrypt("org_a", "", "wandb", newer) == "v"
    with pytest.raises(SecretUnreadable):
        cipher_for(Settings(secrets_key=KEY_B)).decrypt("org_a", "", "wandb", token)


def test_the_admin_command_reencrypts_under_the_newest_key(
    make_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = make_database()
    app = create_app(Settings(database_url=url, secrets_key=KEY_A))
    value = canary()
    with TestClient(app) as api:
        set_secret(api, make_tenant(api), "wandb", value)
    app_engine(app).dispose()
    monkeypatch.setenv("TRAINPORT_DATABASE_URL", url)
    monkeypatch.setenv("TRAINPORT_SECRETS_KEY", f"{KEY_B},{KEY_A}")
    get_settings.cache_clear()
    try:
        assert admin.main(["secrets-reencrypt"]) == 0
    finally:
        get_settings.cache_clear()
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(select(RunSecret)).one()
    engine.dispose()
    only_new = cipher_for(Settings(secrets_key=KEY_B))
    assert only_new.decrypt(row.org_id, "", "wandb", row.ciphertext) == value


class ProductionBasics(TypedDict):
    """What a production server needs besides its secrets key."""

    environment: Environment
    secret_key: str
    database_url: str


def test_production_refuses_to_start_without_a_secrets_key() -> None:
    production = ProductionBasics(
        environment=Environment.PRODUCTION,
        secret_key="x" * 40,
        database_url="postgresql+psycopg://db/trainport",
    )
    with pytest.raises(ValidationError, match="TRAINPORT_SECRETS_KEY"):
        Settings(**production)
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(**production, secrets_key="short")
    assert Settings(**production, secrets_key=KEY_A).secrets_keys() == [KEY_A]


def test_the_keys_can_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{KEY_B}\n{KEY_A}\n")
    settings = Settings(secrets_key_file=path)
    assert settings.secrets_keys() == [KEY_B, KEY_A]
    token = cipher_for(Settings(secrets_key=KEY_A)).encrypt("o", "", "n", "v")
    assert cipher_for(settings).decrypt("o", "", "n", token) == "v"


def test_a_log_writer_redacts_every_secret_value_and_each_line_of_a_multi_line_one(
    tmp_path: Path,
) -> None:
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"
    writer = LogStore(tmp_path).writer("run_x", 1, 0, redact=["hunter2-token", pem, ""])
    writer.write("stdout", "token=hunter2-token and again hunter2-token\n")
    writer.write("stdout", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n")
    writer.write("stderr", f"{pem}\n")
    writer.write("stdout", "nothing secret here\n")
    writer.close()
    text = LogStore(tmp_path).ref("run_x", 1, 0).path.read_text()
    assert "hunter2" not in text
    assert "MIIEvQ" not in text
    assert "token=*** and again ***" in text
    assert "nothing secret here" in text
