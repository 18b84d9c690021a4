"""The project declaration and what reads it: render, push, publish-code, on a project that is not the kit's."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from kaggle_kit.code_dataset import matches, select_files, stage_code
from kaggle_kit.errors import ConfigError, DeclarationError, MetadataError
from kaggle_kit.notebooks import RenderOptions, render
from kaggle_kit.project import PublishRules, load_project

NOTEBOOK = '''\
# %% tags=["parameters"]
project = "demo"
code_dataset = None
datasets = []
config = "configs/train.yaml"
overrides = []
lr_scale = 1.0

# %%
print(project, code_dataset, datasets, config, overrides, lr_scale)
'''

SCHEMA = '''\
from dataclasses import dataclass, field


@dataclass
class Train:
    lr: float = 0.1
    epochs: int = 1

    def validate(self):
        from kaggle_kit.errors import ConfigError
        if self.lr <= 0:
            raise ConfigError(f"train.lr = {self.lr} is invalid: it must be positive")


@dataclass
class Settings:
    train: Train = field(default_factory=Train)
'''


def declare(root: Path, body: str, *, standalone: bool = False) -> Path:
    """A project at ``root``: a notebook, a config and its schema, and the declaration ``body``."""
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    (root / "notebooks" / "prep-features.py").write_text(NOTEBOOK)
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "train.yaml").write_text("train:\n  lr: 0.01\n")
    (root / "demo_pkg").mkdir(exist_ok=True)
    (root / "demo_pkg" / "__init__.py").write_text("")
    (root / "demo_pkg" / "settings.py").write_text(SCHEMA)
    body = textwrap.dedent(body)
    if standalone:
        (root / "kaggle-kit.toml").write_text(body)
    else:
        table = body.replace("[notebooks.", "[tool.kaggle-kit.notebooks.").replace("[publish]", "[tool.kaggle-kit.publish]")
        (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n\n[tool.kaggle-kit]\n" + table)
    return root


BASIC = '''
name = "demo"
owner = "alice"
config = "configs/train.yaml"
config-schema = "demo_pkg.settings:Settings"

[notebooks.prep-features]
source = "notebooks/prep-features.py"
datasets = ["alice/demo-data"]
parameters = { lr_scale = 2.0 }
'''


def injected(notebook: Path) -> dict:
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(cell.source, namespace)  # noqa: S102 - our own rendering of repr() values
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


def test_defaults_are_filled_in_from_the_name_and_owner(tmp_path):
    project = load_project(declare(tmp_path / "p", BASIC))
    nb = project.notebook("prep-features")
    assert (project.name, project.owner) == ("demo", "alice")
    assert project.code_dataset == "alice/demo-code" and project.kit_dataset == "alice/kaggle-kit"
    assert project.checkpoint_dataset == "alice/demo-ckpt"
    assert nb.kernel == "alice/demo-prep-features" and nb.title == "demo prep features"
    assert (nb.accelerator, nb.machine_shape, nb.internet, nb.checkpoints) == ("none", None, True, "mirror")
    assert nb.competition is None and nb.datasets == ("alice/demo-data",)
    standalone = load_project(declare(tmp_path / "q", BASIC, standalone=True))
    assert standalone.file.name == "kaggle-kit.toml" and standalone.notebooks.keys() == project.notebooks.keys()


@pytest.mark.parametrize("body, where", [
    (BASIC.replace('owner = "alice"', ""), "owner: missing"),
    (BASIC.replace('owner = "alice"', 'owner = "alice"\nonwer = "x"'), "unknown key 'tool.kaggle-kit.onwer'"),
    (BASIC.replace('datasets = ["alice/demo-data"]', 'datasets = "alice/demo-data"'),
     "tool.kaggle-kit.notebooks.prep-features.datasets: expected list"),
    (BASIC.replace('datasets = ["alice/demo-data"]', 'datasets = ["alice"]'), "owner/slug"),
    (BASIC.replace('datasets = ["alice/demo-data"]', 'accelerator = "NvidiaTeslaP100"'), "retired"),
    (BASIC.replace('datasets = ["alice/demo-data"]', 'internet = false\ncheckpoints = "mirror"'),
     "checkpoints: mirror needs internet"),
    (BASIC.replace('source = "notebooks/prep-features.py"', 'source = "../elsewhere.py"'), "inside it"),
    (BASIC.replace('name = "demo"', 'name = "Demo Project"'), "name: 'Demo Project' must be lower-case"),
    (BASIC.replace('config-schema = "demo_pkg.settings:Settings"', 'config-schema = "demo_pkg.settings"'),
     "module:attribute"),
])
def test_a_malformed_declaration_names_the_file_and_the_key(tmp_path, body, where):
    root = declare(tmp_path / "p", body)
    with pytest.raises(DeclarationError) as caught:
        load_project(root)
    assert str(root / "pyproject.toml") in str(caught.value) and where in str(caught.value)


def test_no_declaration_and_two_declarations_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeclarationError, match="has no project declaration.*kaggle-kit init"):
        load_project(tmp_path / "empty")
    root = declare(tmp_path / "p", BASIC)
    (root / "kaggle-kit.toml").write_text(textwrap.dedent(BASIC))
    with pytest.raises(DeclarationError, match="declared twice.*pyproject.toml.*kaggle-kit.toml"):
        load_project(root)


def test_render_injects_only_the_names_the_parameters_cell_assigns(tmp_path):
    root = declare(tmp_path / "p", BASIC)
    rendered = render(root, "prep-features", RenderOptions(overrides=("train.epochs=3",)))
    params = injected(rendered.notebook)
    # No competition, kit_dataset, checkpoint_dataset or accelerator_plan: the cell does not assign them.
    assert params == {"project": "demo", "code_dataset": "alice/demo-code", "datasets": ["alice/demo-data"],
                      "config": "configs/train.yaml", "overrides": ["train.epochs=3"], "lr_scale": 2.0}
    meta = rendered.metadata
    assert meta["id"] == "alice/demo-prep-features" and meta["code_file"] == "prep-features.ipynb"
    assert meta["enable_gpu"] is False and meta["enable_tpu"] is False and meta["enable_internet"] is True
    assert meta["competition_sources"] == [] and "machine_shape" not in meta
    assert meta["dataset_sources"] == ["alice/demo-data", "alice/demo-code", "alice/kaggle-kit", "alice/demo-ckpt"]
    with pytest.raises(MetadataError, match="does not assign competition_id"):
        render(root, "prep-features", RenderOptions(params={"competition_id": "titanic"}))


def test_accelerator_and_internet_are_as_declared_or_as_asked(tmp_path):
    body = BASIC.replace('datasets = ["alice/demo-data"]', 'accelerator = "NvidiaL4"\ninternet = false\n'
                                                           'checkpoints = "read"')
    root = declare(tmp_path / "p", body)
    meta = render(root, "prep-features").metadata
    assert (meta["enable_gpu"], meta["machine_shape"], meta["enable_internet"]) == (True, "NvidiaL4", False)
    meta = render(root, "prep-features", RenderOptions(accelerator="none")).metadata
    assert meta["enable_gpu"] is False and "machine_shape" not in meta


def test_render_refuses_a_config_that_does_not_fit_the_schema(tmp_path, capsys):
    from kaggle_kit.cli import main

    root = declare(tmp_path / "p", BASIC)
    (root / "configs" / "bad.yaml").write_text("train:\n  lr: fast\n")
    assert main(["render", "prep-features", "--root", str(root), "--config", "configs/bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert "configs/bad.yaml" in err and "train.lr" in err and "expected float" in err
    assert not (root / "notebooks" / "build" / "prep-features").exists(), "nothing pushable is written"
    with pytest.raises(ConfigError, match="train.lr = -1.0 is invalid"):
        render(root, "prep-features", RenderOptions(overrides=("train.lr=-1",)))


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_publish_code_takes_what_git_tracks_and_never_outputs(tmp_path):
    root = declare(tmp_path / "p", BASIC + '\n[publish]\ninclude = ["configs/local/*.yaml"]\nexclude = ["docs"]\n')
    files = {"demo_pkg/model.py": "x = 1\n", "docs/guide.md": "# guide\n", "kernel-output/demo/step.log": "x",
             "kaggle-kit-rehearsal/state/a.json": "{}", "out/step-0000000010.pt": "t",
             "out/step-0000000010.manifest.json": "{}", "out/ledger.json": "{}", ".venv/pyvenv.cfg": "",
             "configs/local/extra.yaml": "a: 1\n", "demo_pkg/untracked.py": "y = 2\n"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q")
    tracked = [p for p in files if not p.startswith(("configs/local", "demo_pkg/untracked"))]
    git(root, "add", "-f", "pyproject.toml", "notebooks", "configs/train.yaml", "demo_pkg/__init__.py",
        "demo_pkg/settings.py", *tracked)
    project = load_project(root)
    selected, warnings = select_files(root, project.publish)
    names = {p.as_posix() for p in selected}
    assert "demo_pkg/model.py" in names and "configs/local/extra.yaml" in names  # tracked, and included
    assert not names & {"docs/guide.md", "kernel-output/demo/step.log", "kaggle-kit-rehearsal/state/a.json",
                        "out/step-0000000010.pt", "out/step-0000000010.manifest.json", "out/ledger.json",
                        ".venv/pyvenv.cfg", "demo_pkg/untracked.py"}
    assert any("demo_pkg/untracked.py" in w and "NOT uploaded" in w for w in warnings)
    staged = stage_code(root, tmp_path / "stage", rules=project.publish, secrets=[])
    assert staged.bytes == sum((root / p).stat().st_size for p in staged.files)


def test_without_git_the_include_and_exclude_rules_decide(tmp_path):
    root = declare(tmp_path / "p", BASIC)
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"0" * 10)
    rules = PublishRules(include=("demo_pkg/**", "notebooks/*.py", "pyproject.toml"), exclude=("settings.py",))
    selected, warnings = select_files(root, rules)
    assert {p.as_posix() for p in selected} == {"demo_pkg/__init__.py", "notebooks/prep-features.py",
                                                "pyproject.toml"}
    assert any("not a git work tree" in w for w in warnings)
    assert matches("a/b/data/x.csv", ["data"]) and matches("configs/x.yaml", ["configs/*.yaml"])
    assert not matches("src/configs/x.yaml", ["configs/*.yaml"])


@pytest.fixture
def quiet_server(tmp_path, kaggle_isolation, monkeypatch):
    """An offline Kaggle that stores pushes without running them (their status stays QUEUED)."""
    from kaggle_kit.kaggle_api import point_client_at
    from kaggle_kit.sim.server import SimServer

    with SimServer(tmp_path / "state", username="alice", key=secrets.token_hex(16)) as server:
        env = server.client_env({})
        for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_KIT_API_ENDPOINT"):
            monkeypatch.setenv(name, env[name])
        point_client_at(server.url)
        yield server


def test_push_that_creates_a_version_despite_an_error_says_so(tmp_path, quiet_server, capsys):
    from kaggle_kit.cli import main

    root = declare(tmp_path / "p", BASIC)
    code = main(["push", "prep-features", "--root", str(root), "--competition", "bogus-comp", "--no-lint"])
    out = capsys.readouterr().out
    assert code == 0, "a version runs: not a failure"
    assert "WARNING" in out and "version 1 was created and is QUEUED" in out and "bogus-comp" in out
    assert "burns quota" in out
    bob = declare(tmp_path / "bob", BASIC.replace('owner = "alice"', 'owner = "bob"'))
    assert main(["push", "prep-features", "--root", str(bob), "--no-lint"]) == 2
    assert "nothing was created" in capsys.readouterr().err


def test_status_and_output_take_any_declared_notebook_name(tmp_path, quiet_server, capsys):
    from kaggle_kit.cli import main

    root = declare(tmp_path / "p", BASIC)
    assert main(["push", "prep-features", "--root", str(root), "--no-lint"]) == 0
    capsys.readouterr()
    assert main(["status", "prep-features", "--root", str(root)]) == 0
    assert "alice/demo-prep-features" in capsys.readouterr().out


def test_publish_code_command_prints_files_and_bytes(tmp_path, quiet_server, capsys):
    from kaggle_kit.cli import main

    root = declare(tmp_path / "p", BASIC)
    assert main(["publish-code", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert f"created alice/demo-code: uploaded 5 files, {total} bytes" in out, out


def test_cli_render_works_from_inside_the_project_with_the_kit_installed(tmp_path):
    root = declare(tmp_path / "p", BASIC)
    result = subprocess.run([sys.executable, "-m", "kaggle_kit", "render"], cwd=root / "notebooks",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    meta = json.loads((root / "notebooks" / "build" / "prep-features" / "kernel-metadata.json").read_text())
    assert meta["id"] == "alice/demo-prep-features"


def test_publish_code_checks_the_given_credentials_not_the_environments(tmp_path, quiet_server, monkeypatch):
    from kaggle_kit.code_dataset import publish_code
    from kaggle_kit.errors import CredentialError
    from kaggle_kit.kaggle_api import Credentials

    root = declare(tmp_path / "p", BASIC)
    (root / "README.md").write_text("export KAGGLE_KEY=stand-in-only   # the docs' example\n")
    server_key = quiet_server.client_env({})["KAGGLE_KEY"]
    monkeypatch.setenv("KAGGLE_KEY", "stand-in-only")
    with pytest.raises(CredentialError, match="README.md contains your Kaggle API key"):
        publish_code(root)  # the command's way: the key the client finds is the one no file may hold
    # The rehearsal's way: its own credentials, whatever the shell holds.
    result = publish_code(root, credentials=Credentials(username="alice", key=server_key, source="test"))
    assert result["created"] and "README.md" in result["files"]


def test_a_command_outside_any_project_never_picks_the_kits_checkout(tmp_path):
    console = Path(sys.executable).parent / "kaggle-kit"  # the script lives in the kit's environment
    (tmp_path / "empty").mkdir()
    result = subprocess.run([str(console), "render"], cwd=tmp_path / "empty", capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "no project root found" in result.stderr, result.stdout + result.stderr
