"""Local versus production is decided from the environment alone."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from resources import build_resources
from resources.settings import Settings


def test_local_defaults_live_under_platform_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"PLATFORM_HOME": str(tmp_path)})
    assert settings.environment == "local"
    assert settings.lakehouse_uri == str(tmp_path / "lake")
    assert settings.landing_uri == str(tmp_path / "landing")
    assert settings.storage_options == settings.landing_storage_options == {}
    assert settings.online_store_url == f"sqlite:///{tmp_path / 'online.db'}"


def test_production_requires_explicit_services() -> None:
    with pytest.raises(ValueError, match="LAKEHOUSE_URI"):
        Settings.from_env({"PLATFORM_ENV": "production"})
    services = {"PLATFORM_ENV": "production", "LAKEHOUSE_URI": "s3://lake/prod"}
    with pytest.raises(ValueError, match="ONLINE_STORE_URL"):
        Settings.from_env(services)
    services["ONLINE_STORE_URL"] = "redis://127.0.0.1:6379/0"
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_URI"):
        Settings.from_env(services)
    services["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:5000"
    with pytest.raises(ValueError, match="OPTUNA_STORAGE"):
        Settings.from_env(services)
    services["OPTUNA_STORAGE"] = "postgresql://optuna@127.0.0.1/optuna"
    settings = Settings.from_env(services | {"MODEL_APPROVERS": " alice, bob ,"})
    assert settings.mlflow_artifact_root is None  # the tracking server decides
    assert settings.model_approvers == ("alice", "bob")


def test_unknown_environment_is_rejected() -> None:
    with pytest.raises(ValueError, match="PLATFORM_ENV"):
        Settings.from_env({"PLATFORM_ENV": "staging"})


def test_s3_keys_stay_in_the_environment_and_out_of_every_resource() -> None:
    settings = Settings.from_env(
        {
            "PLATFORM_ENV": "production",
            "LAKEHOUSE_URI": "s3://lake/prod",
            "ONLINE_STORE_URL": "redis://127.0.0.1:6379/0",
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
            "OPTUNA_STORAGE": "postgresql://optuna@127.0.0.1/optuna",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_ACCESS_KEY_ID": "id",
            "AWS_SECRET_ACCESS_KEY": "secret",
        }
    )
    resources = build_resources(settings)
    lakehouse = resources["lakehouse"]
    assert lakehouse.root_uri == "s3://lake/prod"
    assert lakehouse.storage_options == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
    }
    # delta-rs, pyarrow and boto3 read the keys from the environment: no config shows them.
    shown = repr(settings) + "".join(repr(resource) for resource in resources.values())
    assert "secret" not in shown and "AWS_SECRET_ACCESS_KEY" not in shown


def test_pseudonymization_key_is_read_from_the_environment_only() -> None:
    pseudonymizer = build_resources(Settings.from_env({}))["pseudonymizer"]
    assert isinstance(pseudonymizer.key, dg.EnvVar)
    assert pseudonymizer.key.env_var_name == "PSEUDONYMIZATION_KEY"


def test_the_default_home_is_the_one_make_uses_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Makefile's PLATFORM_HOME default is $(CURDIR)/.platform at the project root."""
    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parents[2]
    assert Settings.from_env({}).home == root / ".platform"


def test_the_serving_token_comes_from_the_environment_and_is_never_shown() -> None:
    settings = Settings.from_env({"SERVING_TOKEN": "t0ken-value", "CANARY_SHARE": "0.25"})
    assert settings.serving_token == "t0ken-value"
    assert "t0ken-value" not in repr(settings)
    assert settings.canary_share == 0.25
    serving = build_resources(settings)["serving"]
    assert isinstance(serving.token, dg.EnvVar)
    assert serving.token.env_var_name == "SERVING_TOKEN"


def test_a_service_reads_the_lake_and_store_the_platform_uses() -> None:
    settings = Settings.from_env(
        {"ONLINE_STORE_URL": "redis://cache:6379/0", "LAKEHOUSE_URI": "/srv/lake"}
    )
    environment = build_resources(settings)["serving"].environment
    assert Settings.from_env(environment).online_store_url == "redis://cache:6379/0"
    assert Settings.from_env(environment).lakehouse_uri == "/srv/lake"
    assert "SERVING_TOKEN" not in environment
