"""load_config: YAML 1.1 quirks coerced by the schema, every refusal with the file, key path and type."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from kaggle_kit.config import apply_overrides, config_from_dict, config_hash, config_to_dict, load_config, setting
from kaggle_kit.errors import ConfigError
from kaggle_kit.training import TrainConfig


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


@dataclass
class Optim:
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Data:
    root: Path = Path("/kaggle/input")
    image_size: int = 448
    batch_size: int = 8
    folds: list[int] = field(default_factory=lambda: [0, 1])
    cache: bool = False
    supplemental: str | None = None


@dataclass
class Config:
    name: str = "run"
    seed: int = 0
    precision: Literal["fp32", "fp16", "bf16"] = "fp16"
    mode: Mode = Mode.SAFE
    opt: Optim = field(default_factory=Optim)
    data: Data = field(default_factory=Data)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_yaml_scientific_notation_and_quoted_int_are_coerced(tmp_path):
    path = _write(tmp_path, "opt:\n  lr: 1e-4\n  weight_decay: '5e-2'\ndata:\n  batch_size: '16'\n  image_size: 224.0\n")
    cfg = load_config(path, Config)
    assert cfg.opt.lr == 0.0001 and isinstance(cfg.opt.lr, float)
    assert cfg.opt.weight_decay == 0.05
    assert cfg.data.batch_size == 16 and isinstance(cfg.data.batch_size, int)
    assert cfg.data.image_size == 224 and isinstance(cfg.data.image_size, int)


def test_missing_keys_take_defaults_and_empty_file_is_all_defaults(tmp_path):
    assert load_config(_write(tmp_path, ""), Config) == Config()
    cfg = load_config(_write(tmp_path, "seed: 3\n"), Config)
    assert cfg.seed == 3 and cfg.opt == Optim() and cfg.data == Data()


def test_other_types(tmp_path):
    text = ("precision: bf16\nmode: fast\ndata:\n  root: /tmp/x\n  folds: ['1', 2]\n  cache: 'yes'\n"
            "  supplemental: null\nopt:\n  betas: [0.8, '0.99']\n")
    cfg = load_config(_write(tmp_path, text), Config)
    assert cfg.precision == "bf16" and cfg.mode is Mode.FAST
    assert cfg.data.root == Path("/tmp/x") and cfg.data.folds == [1, 2] and cfg.data.cache is True
    assert cfg.opt.betas == (0.8, 0.99)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("opt:\n  lr: fast\n", "opt.lr: expected float, got 'fast'"),
        ("opt:\n  lr: .nan\n", "opt.lr: expected a number, got NaN"),
        ("opt:\n  lr: nan\n", "opt.lr: expected a number, got NaN"),
        ("data:\n  batch_size: 8.5\n", "data.batch_size: expected int"),
        ("data:\n  batch_size: true\n", "data.batch_size: expected int, got the boolean"),
        ("data:\n  cache: maybe\n", "data.cache: expected bool"),
        ("name: 2024\n", "name: expected a string, got int 2024 (quote it in YAML)"),
        ("precision: fp8\n", "precision: expected one of 'fp32', 'fp16', 'bf16'"),
        ("mode: turbo\n", "mode: expected one of FAST, SAFE"),
        ("opt: 3\n", "opt: expected a section"),
        ("data:\n  folds: 3\n", "data.folds: expected a list"),
        ("opt:\n  betas: [0.9]\n", "opt.betas: expected 2 items"),
    ],
)
def test_refusals_name_file_key_and_type(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, Config)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_unknown_key_suggests_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'opt\.lrr'; did you mean 'opt\.lr'\?"):
        load_config(_write(tmp_path, "opt:\n  lrr: 0.1\n"), Config)
    with pytest.raises(ConfigError, match=r"unknown key 'sed'; did you mean 'seed'\?"):
        load_config(_write(tmp_path, "sed: 1\n"), Config)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", Config)
    with pytest.raises(ConfigError, match="not valid YAML at line 3"):
        load_config(_write(tmp_path, "a: 1\nb: [\n"), Config)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"), Config)


def test_dotted_overrides_are_typed(tmp_path):
    path = _write(tmp_path, "opt:\n  lr: 1e-4\n")
    cfg = load_config(path, Config, ["opt.lr=3e-4", "data.batch_size='32'", "precision=bf16", "data.folds=[3]"])
    assert cfg.opt.lr == 0.0003 and cfg.data.batch_size == 32 and cfg.precision == "bf16" and cfg.data.folds == [3]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("opt.lr=fast", "opt.lr: expected float"),
        ("opt.lrr=1", "unknown key 'opt.lrr'; did you mean 'opt.lr'?"),
        ("optt.lr=1", "unknown key 'optt'; did you mean 'opt'?"),
        ("seed.x=1", "'seed' is not a section"),
        ("opt.lr", "must look like key.path=value"),
    ],
)
def test_override_refusals(tmp_path, override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, ""), Config, [override])
    assert needle in str(err.value)


def test_required_key_missing():
    @dataclass
    class Needs:
        dataset: str

    with pytest.raises(ConfigError, match="required key"):
        config_from_dict({}, Needs)


def test_round_trip_and_hash():
    cfg = Config()
    data = config_to_dict(cfg)
    assert data["data"]["root"] == "/kaggle/input" and data["mode"] == "safe"
    assert config_from_dict(data, Config) == cfg
    assert config_hash(cfg) == config_hash(config_from_dict(data, Config))
    changed = apply_overrides(cfg, ["opt.lr=0.5"])
    assert changed.opt.lr == 0.5 and cfg.opt.lr == 1e-3
    assert config_hash(changed) != config_hash(cfg)


def _write_bytes(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    return path


def test_encodings_not_utf8_are_refused_and_a_byte_order_mark_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.yaml is not UTF-8 text .*save it as UTF-8"):
        load_config(_write_bytes(tmp_path, "name: 'caf\xe9'\n".encode("latin-1")), Config)
    # What Windows editors and PowerShell redirection write: UTF-16 with a byte-order mark, and UTF-8 with one.
    assert load_config(_write_bytes(tmp_path, "seed: 4\n".encode("utf-16")), Config).seed == 4
    assert load_config(_write_bytes(tmp_path, "seed: 5\n".encode("utf-8-sig")), Config).seed == 5
    with pytest.raises(ConfigError, match="is not UTF-16 text"):
        load_config(_write_bytes(tmp_path, "seed: 4\n".encode("utf-16") + b"\x00"), Config)


@pytest.mark.parametrize("text", ["opt: " + "[" * 100_000 + "]" * 100_000, "opt: " + "{a: " * 100_000 + "}" * 100_000])
def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path, text):
    with pytest.raises(ConfigError, match=r"not valid YAML at line 1, column \d+: nests deeper than 32 levels"):
        load_config(_write(tmp_path, text), Config)
    # An override goes through the same parser.
    with pytest.raises(ConfigError, match="opt.betas: expected a list"):
        load_config(_write(tmp_path, ""), Config, ["opt.betas=" + "[" * 100_000])


def test_oversize_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="more than the 4194304 a config file may have"):
        load_config(_write(tmp_path, "#" * (5 << 20)), Config)


@pytest.mark.parametrize(("text", "needle"), [
    ("opt:\n  lr: 1e-4\ndata:\n  cache: true\nopt:\n  weight_decay: 0.1\n",
     "line 5, column 1: duplicate key 'opt' (first at line 1)"),
    ("opt:\n  lr: 1e-4\n  lr: 3e-4\n", "line 3, column 3: duplicate key 'lr' (first at line 2)"),
])
def test_duplicate_keys_are_refused(tmp_path, text, needle):
    with pytest.raises(ConfigError, match="YAML would keep only the last one silently") as err:
        load_config(_write(tmp_path, text), Config)
    assert needle in str(err.value)


def test_merge_keys_may_be_overridden(tmp_path):
    @dataclass
    class Two:
        a: Optim = field(default_factory=Optim)
        b: Optim = field(default_factory=Optim)

    text = "a: &base\n  lr: 0.1\n  weight_decay: 0.2\nb:\n  <<: *base\n  lr: 0.5\n"
    cfg = load_config(_write(tmp_path, text), Two)
    assert (cfg.b.lr, cfg.b.weight_decay) == (0.5, 0.2)


@dataclass
class Ranged:
    rate: float = setting(0.1, gt=0)
    fraction: float = setting(0.2, ge=0, lt=1)
    cap: int | None = setting(None, ge=1)
    kind: str = setting("a", choices=("a", "b"))


@pytest.mark.parametrize(("text", "needle"), [
    ("rate: .inf\n", "rate = inf is invalid: it must be a finite number > 0"),
    ("rate: -1\n", "rate = -1.0 is invalid: it must be a finite number > 0"),
    ("fraction: 7\n", "fraction = 7.0 is invalid: it must be a finite number >= 0 and < 1"),
    ("cap: 0\n", "cap = 0 is invalid: it must be a finite number >= 1"),
    ("kind: c\n", "kind = 'c' is invalid: it must be one of a, b"),
])
def test_ranges_declared_by_the_schema_are_checked(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, Ranged)
    assert str(path) in str(err.value) and needle in str(err.value)
    with pytest.raises(ConfigError, match="rate = 0.0 is invalid"):
        load_config(_write(tmp_path, ""), Ranged, ["rate=0"])
    assert load_config(_write(tmp_path, "cap: null\nfraction: 0\n"), Ranged) == Ranged(fraction=0.0)


@dataclass
class Run:
    train: TrainConfig = field(default_factory=TrainConfig)


def test_training_and_cmfd_configs_declare_their_ranges(tmp_path):
    from kaggle_kit.cmfd.config import load_cmfd_config

    for text, needle in (("train:\n  lr: .inf\n", "train.lr = inf"), ("train:\n  lr: -3e-4\n", "train.lr = -0.0003"),
                         ("train:\n  epochs: -2\n", "train.epochs = -2")):
        with pytest.raises(ConfigError, match=needle):
            load_config(_write(tmp_path, text), Run)
    with pytest.raises(ConfigError, match="data.val_fraction = 7.0 is invalid"):
        load_cmfd_config("tiny", ["data.val_fraction=7"])
    # A config built in code is checked the same way before training.
    with pytest.raises(ConfigError, match=r"train.lr = inf is invalid"):
        TrainConfig(lr=float("inf")).validate()
