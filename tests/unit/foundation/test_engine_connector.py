"""The Cloud SQL connector's arguments: which instance address (DB_IP_TYPE) and login."""

from __future__ import annotations

import pytest
from google.cloud.sql.connector import IPTypes

from forecastguard.config import ConfigError, Settings
from forecastguard.db.engine import Timeouts, connector_args

CLOUD_SQL = {
    "CLOUD_SQL_INSTANCE": "proj:europe-west1:fg",
    "DB_USER": "forecastguard",
    "DB_PASS": "generated",
    "DB_NAME": "forecastguard",
}


def test_public_address_by_default() -> None:
    args = connector_args(Settings.from_env(CLOUD_SQL), Timeouts())
    assert args["ip_type"] is IPTypes.PUBLIC
    assert (args["user"], args["password"], args["db"]) == (
        "forecastguard",
        "generated",
        "forecastguard",
    )
    assert args["enable_iam_auth"] is False


@pytest.mark.parametrize(
    "raw, expected",
    [("PRIVATE", IPTypes.PRIVATE), ("private", IPTypes.PRIVATE), ("psc", IPTypes.PSC)],
)
def test_db_ip_type_chooses_the_instance_address(raw: str, expected: IPTypes) -> None:
    """Organisations enforcing sql.restrictPublicIp have instances with a private address
    only (Terraform's sql_private_ip sets DB_IP_TYPE=PRIVATE on every component)."""
    settings = Settings.from_env({**CLOUD_SQL, "DB_IP_TYPE": raw})
    assert connector_args(settings, Timeouts(connect_s=7))["ip_type"] is expected
    assert connector_args(settings, Timeouts(connect_s=7))["timeout"] == 7


def test_iam_login_sends_no_password() -> None:
    settings = Settings.from_env({**CLOUD_SQL, "DB_IAM_AUTH": "1", "DB_IP_TYPE": "private"})
    args = connector_args(settings, Timeouts())
    assert args["password"] is None and args["enable_iam_auth"] is True


def test_a_bad_ip_type_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DB_IP_TYPE must be one of PUBLIC, PRIVATE, PSC"):
        Settings.from_env({**CLOUD_SQL, "DB_IP_TYPE": "internal"})
