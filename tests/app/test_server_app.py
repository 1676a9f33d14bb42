"""The ServerApp (fl_poison/app/server_app.py): a config error is one logged line."""

from __future__ import annotations



def test_serverapp_config_error_is_one_logged_line(caplog):
    from fl_poison.app.server_app import app as server_app
    from fl_poison.engine.inprocess import run_inprocess

    run_inprocess(server_app, {"num-clients": 3, "clients-per-round": 5}, 3)
    assert "fl-poison: error: invalid value for 'clients-per-round'" in caplog.text
