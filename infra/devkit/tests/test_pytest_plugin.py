"""The session's embedded server survives what another pytest session on the same machine does
to pytest's temporary root: reset it to mode 0700 (a second `make test` in another clone)."""

import pytest

pytestmark = pytest.mark.integration


def test_the_session_server_keeps_working_when_pytests_temporary_root_is_locked(
    test_platform, tmp_path_factory
):
    root = tmp_path_factory.getbasetemp().parent
    mode = root.stat().st_mode
    root.chmod(0o700)
    try:
        # A checkpoint writes to the data folder: it fails if the server lost access to it.
        conn = test_platform.admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute("CHECKPOINT")
                cur.execute("SELECT count(*) FROM pg_database")
                (databases,) = cur.fetchone()
        finally:
            conn.close()
    finally:
        root.chmod(mode)

    assert databases >= 3
    assert not test_platform.platform.state.is_relative_to(root)
