"""Where the platform's variables come from: environment, generated file, defaults."""

from platform_devkit.settings import ROLES, PlatformSettings


def test_generated_passwords_are_kept_and_reused(tmp_path):
    first = PlatformSettings(tmp_path, environ={})
    first.remember_embedded_port(5999)
    env = first.resolve()

    again = PlatformSettings(tmp_path, environ={}).resolve()

    assert again == env
    assert len({env[r.password_var] for r in ROLES.values()}) == len(ROLES)
    assert (tmp_path / "platform.env").stat().st_mode & 0o777 == 0o600


def test_the_environment_wins_over_the_file(tmp_path):
    PlatformSettings(tmp_path, environ={}).remember_embedded_port(5999)

    env = PlatformSettings(tmp_path, environ={"WAREHOUSE_DB": "dwh", "SHOP_DB_PASSWORD": "given"})

    resolved = env.resolve()
    assert resolved["WAREHOUSE_DB"] == "dwh"
    assert resolved["SHOP_DB_PASSWORD"] == "given"
    assert "given" not in (tmp_path / "platform.env").read_text()


def test_pghost_points_everything_at_an_existing_server(tmp_path):
    environ = {"PGHOST": "db.internal", "PGPORT": "6543", "PGUSER": "admin", "PGPASSWORD": "pw"}

    resolved = PlatformSettings(tmp_path, environ=environ).resolve()

    assert resolved["WAREHOUSE_HOST"] == resolved["DAGSTER_PG_HOST"] == "db.internal"
    assert resolved["SHOP_DB_PORT"] == "6543"
    assert resolved["PGUSER"] == "admin"


def test_no_server_and_no_embedded_one_names_pghost(tmp_path):
    import pytest

    with pytest.raises(RuntimeError, match="PGHOST"):
        PlatformSettings(tmp_path, environ={}).resolve()
