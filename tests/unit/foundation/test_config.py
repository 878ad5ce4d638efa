import dataclasses

import pytest

from forecastguard.config import ConfigError, Settings


def test_defaults_match_design():
    s = Settings.from_env({})
    assert (s.rmse_threshold, s.window_days, s.fdr_alpha, s.min_samples) == (18.0, 30, 0.05, 7)
    assert s.allow_unauthenticated is False and s.report_recipients == ()


def test_environment_is_parsed_and_flags_override():
    env = {
        "RMSE_THRESHOLD": "12.5",
        "WINDOW_DAYS": "14",
        "DB_IAM_AUTH": "yes",
        "REPORT_RECIPIENTS": "a@x.org, b@y.org;c@z.org",
        "DATABASE_URL": "sqlite:///env.db",
    }
    s = Settings.from_env(env, database_url="sqlite:///flag.db", window_days=None)
    assert s.rmse_threshold == 12.5 and s.window_days == 14 and s.db_iam_auth is True
    assert s.report_recipients == ("a@x.org", "b@y.org", "c@z.org")
    assert s.database_url == "sqlite:///flag.db"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RMSE_THRESHOLD": "abc"}, "RMSE_THRESHOLD"),
        ({"RMSE_THRESHOLD": "-1"}, "RMSE_THRESHOLD"),
        ({"RMSE_THRESHOLD": "nan"}, "RMSE_THRESHOLD"),
        ({"WINDOW_DAYS": "3.5"}, "WINDOW_DAYS"),
        ({"WINDOW_DAYS": "0"}, "WINDOW_DAYS"),
        ({"FDR_ALPHA": "1"}, "FDR_ALPHA"),
        ({"ALLOW_UNAUTHENTICATED": "maybe"}, "ALLOW_UNAUTHENTICATED"),
        ({"SMTP_PORT": "70000"}, "SMTP_PORT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
)
def test_malformed_values_fail_fast_naming_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_settings_are_frozen():
    s = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.window_days = 3  # type: ignore[misc]


def test_require_database_names_what_is_missing():
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Settings.from_env({}).require_database()
    with pytest.raises(ConfigError, match="DB_PASS"):
        Settings.from_env(
            {"CLOUD_SQL_INSTANCE": "p:r:i", "DB_USER": "u", "DB_NAME": "d"}
        ).require_database()
    Settings.from_env(
        {"CLOUD_SQL_INSTANCE": "p:r:i", "DB_USER": "u", "DB_NAME": "d", "DB_IAM_AUTH": "1"}
    ).require_database()


def test_every_field_has_a_distinct_environment_variable():
    names = Settings.env_names()
    assert len(set(names.values())) == len(names)
    assert all(v.isupper() for v in names.values())


def test_unknown_override_is_an_error():
    with pytest.raises(TypeError, match="nonsense"):
        Settings.from_env({}, nonsense=1)
