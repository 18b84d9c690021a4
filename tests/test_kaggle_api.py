"""Credentials are found where the official client looks, handed over in memory, and never shown."""

from __future__ import annotations

import json
import sys

import pytest

from kaggle_kit import kaggle_api
from kaggle_kit.errors import CredentialError
from kaggle_kit.kaggle_api import Credentials, find_credentials, make_api

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "KAGGLE_KIT_API_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delitem(sys.modules, "kaggle_secrets", raising=False)
    return home


def test_nothing_anywhere_is_none_and_make_api_says_what_to_do(clean_env):
    assert find_credentials() is None
    with pytest.raises(CredentialError, match="KAGGLE_USERNAME and KAGGLE_KEY"):
        make_api()


def test_environment_username_and_key(clean_env, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    creds = find_credentials()
    assert creds.username == "alice" and creds.key == KEY and "KAGGLE_USERNAME" in creds.source
    assert KEY not in repr(creds) and KEY not in str(creds)


def test_token_from_env_value_or_file(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok-123")
    assert find_credentials().token == "tok-123"
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file\n")
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(token_file))
    creds = find_credentials()
    assert creds.token == "tok-from-file" and "tok-from-file" not in repr(creds)


def test_kaggle_json_in_config_dir_and_home(clean_env, monkeypatch, tmp_path):
    (clean_env / ".kaggle").mkdir()
    (clean_env / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "bob", "key": KEY}))
    assert find_credentials().username == "bob"
    config_dir = tmp_path / "cfg"
    config_dir.mkdir()
    (config_dir / "kaggle.json").write_text(json.dumps({"username": "carol", "key": KEY}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
    assert find_credentials().username == "carol"


def test_broken_kaggle_json_is_a_clear_error(clean_env):
    (clean_env / ".kaggle").mkdir()
    (clean_env / ".kaggle" / "kaggle.json").write_text("{not json")
    with pytest.raises(CredentialError, match="not valid JSON"):
        find_credentials()
    (clean_env / ".kaggle" / "kaggle.json").write_text('{"username": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CredentialError, match="kaggle.json nests deeper than 64 levels"):
        find_credentials()
    (clean_env / ".kaggle" / "kaggle.json").write_bytes(b'{"username": "caf\xe9", "key": "k"}')
    with pytest.raises(CredentialError, match="kaggle.json is not UTF-8 text"):
        find_credentials()


def test_access_token_file(clean_env):
    (clean_env / ".kaggle").mkdir()
    (clean_env / ".kaggle" / "access_token").write_text("tok-file")
    assert find_credentials().token == "tok-file"


def test_kaggle_secrets_with_configurable_labels(clean_env, monkeypatch):
    store = {"KAGGLE_USERNAME": "dora", "KAGGLE_KEY": KEY, "MY_USER": "erin", "MY_KEY": KEY}

    class UserSecretsClient:
        def get_secret(self, label):
            if label not in store:
                raise KeyError(label)
            return store[label]

    module = type(sys)("kaggle_secrets")
    module.UserSecretsClient = UserSecretsClient
    monkeypatch.setitem(sys.modules, "kaggle_secrets", module)
    assert find_credentials().username == "dora"
    creds = find_credentials(secret_labels=["MY_USER", "MY_KEY"])
    assert creds.username == "erin" and "Kaggle Secrets" in creds.source
    assert find_credentials(secret_labels=["NOPE_USER", "NOPE_KEY"]) is None


def test_incomplete_credentials_refused():
    with pytest.raises(CredentialError, match="incomplete"):
        Credentials(username="alice")


def test_make_api_holds_credentials_in_memory_only(clean_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api = make_api(Credentials(username="alice", key=KEY, source="test"))
    assert api.config_values["username"] == "alice" and api.config_values["key"] == KEY
    from kaggle.api.kaggle_api_extended import KaggleApi

    assert "key" not in KaggleApi.config_values  # the class-level dict is untouched
    assert not list(tmp_path.rglob("kaggle.json")) and not list(clean_env.rglob("kaggle.json"))


def test_endpoint_override_points_every_environment(clean_env, monkeypatch):
    from kagglesdk import kaggle_env

    monkeypatch.setenv("KAGGLE_KIT_API_ENDPOINT", "http://127.0.0.1:9/")
    try:
        assert kaggle_api.apply_endpoint_override() == "http://127.0.0.1:9"
        assert all(url == "http://127.0.0.1:9" for url in kaggle_env._env_to_endpoint.values())
    finally:
        kaggle_api.restore_default_endpoints()
    assert kaggle_env._env_to_endpoint[kaggle_env.KaggleEnv.PROD] == "https://api.kaggle.com"


def test_endpoint_override_must_be_a_url(clean_env):
    with pytest.raises(CredentialError, match="not an http"):
        kaggle_api.point_client_at("localhost:80")
