"""Which dependency file an app's environment is built from, and the conversions of each
format into requirements for uv (supervisor/builds/dependencies.py, dependency_formats.py,
dependency_plan.py): pure functions on a checkout folder, no build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.builds import dependencies
from supervisor.builds.formats import (
    FormatError,
    conda_requirements,
    pipfile_requirements,
    pyproject_requirements,
)
from supervisor.builds.plan import install_plan
from supervisor.runtimes.base import BuildError, EnvSpec

pytestmark = pytest.mark.no_database


def checkout(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    root = tmp_path / "checkout"
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    root.mkdir(exist_ok=True)
    return root


def lock_json(default: dict, develop: dict | None = None) -> str:
    """A Pipfile.lock as pipenv writes it."""
    return json.dumps({"_meta": {"hash": {"sha256": "0" * 64}, "pipfile-spec": 6,
                                 "requires": {"python_version": "3.10"}, "sources": [
                                     {"name": "pypi", "url": "https://pypi.org/simple",
                                      "verify_ssl": True}]},
                       "default": default, "develop": develop or {}})


def spec_of(root: Path, main_file: str = "streamlit_app.py", python: str = "") -> EnvSpec:
    return EnvSpec.from_checkout(root, python, "1.67.0", main_file=main_file)


# Discovery --------------------------------------------------------------------------------
@pytest.mark.parametrize("present,chosen", [
    (["requirements.txt", "pyproject.toml"], "requirements.txt"),
    (["Pipfile", "requirements.txt"], "Pipfile"),
    (["environment.yml", "requirements.txt", "pyproject.toml"], "environment.yml"),
    (["Pipfile", "environment.yml"], "Pipfile"),
    (["uv.lock", "pyproject.toml", "Pipfile"], "uv.lock"),
    (["uv.lock", "requirements.txt"], "requirements.txt"),  # a lock needs its pyproject.toml
    (["pyproject.toml"], "pyproject.toml"),
])
def test_first_format_in_order_wins(tmp_path: Path, present: list[str], chosen: str) -> None:
    root = checkout(tmp_path, {name: "x\n" for name in present})
    found = dependencies.discover(root, "streamlit_app.py")
    assert found.chosen == chosen
    companion = {"uv.lock": "pyproject.toml"}.get(chosen)
    assert set(found.ignored) == set(present) - {chosen, companion, found.skipped_lock}


def test_main_file_folder_comes_before_the_root(tmp_path: Path) -> None:
    root = checkout(tmp_path, {"requirements.txt": "six==1.16.0\n",
                               "app/requirements.txt": "six==1.12.0\n",
                               "app/streamlit_app.py": ""})
    found = dependencies.discover(root, "app/streamlit_app.py")
    assert found.chosen == "app/requirements.txt"
    assert found.log_line() == "Using app/requirements.txt; ignoring requirements.txt at " \
                               "the root."
    spec = spec_of(root, "app/streamlit_app.py")
    assert spec.dependency_file == "app/requirements.txt"
    assert spec.files == {"app/requirements.txt": b"six==1.12.0\n"}
    assert spec.notes[0] == found.log_line()
    # A Pipfile at the root loses to any format in the main file's folder.
    root2 = checkout(tmp_path / "2", {"Pipfile": "[packages]\n", "app/pyproject.toml": ""})
    assert dependencies.discover(root2, "app/main.py").chosen == "app/pyproject.toml"
    # Nothing in the folder: the root's file.
    root3 = checkout(tmp_path / "3", {"requirements.txt": "six\n", "app/main.py": ""})
    assert dependencies.discover(root3, "app/main.py").chosen == "requirements.txt"


def test_python_version_and_packages_are_looked_up_the_same_way(tmp_path: Path) -> None:
    root = checkout(tmp_path, {".python-version": "3.12\n", "app/.python-version": "3.11\n",
                               "packages.txt": "libmagic1\n", "requirements.txt": "six\n"})
    spec = spec_of(root, "app/streamlit_app.py")
    assert spec.python_version == "3.11" and spec.packages == ("libmagic1",)
    assert spec_of(root).python_version == "3.12"


def test_no_dependency_file(tmp_path: Path) -> None:
    root = checkout(tmp_path, {"streamlit_app.py": ""})
    found = dependencies.discover(root, "streamlit_app.py")
    assert found.chosen == "" and "No dependency file found" in found.log_line()
    assert spec_of(root).install_plan().mode == "none"


# What a push changes ------------------------------------------------------------------------
def test_dep_hash_follows_the_files_discovery_uses(tmp_path: Path) -> None:
    files = {"requirements.txt": "six==1.16.0\n", "app/requirements.txt": "-r base.txt\n",
             "app/base.txt": "six==1.12.0\n", "app/streamlit_app.py": ""}
    base = spec_of(checkout(tmp_path / "a", files), "app/streamlit_app.py").dep_hash
    ignored = spec_of(checkout(tmp_path / "b", {**files, "requirements.txt": "six\n"}),
                      "app/streamlit_app.py").dep_hash
    assert ignored == base  # the root's file is not used: a code-only push
    used = spec_of(checkout(tmp_path / "c", {**files, "app/requirements.txt": "six\n"}),
                   "app/streamlit_app.py").dep_hash
    included = spec_of(checkout(tmp_path / "d", {**files, "app/base.txt": "six==1.15.0\n"}),
                       "app/streamlit_app.py").dep_hash
    assert len({base, used, included}) == 3
    lock = {"Pipfile": "[packages]\nsix = '*'\n",
            "Pipfile.lock": lock_json({"six": {"version": "==1.12.0"}})}
    relocked = {**lock, "Pipfile.lock": lock["Pipfile.lock"].replace("1.12.0", "1.15.0")}
    assert spec_of(checkout(tmp_path / "e", lock)).dep_hash != \
        spec_of(checkout(tmp_path / "f", relocked)).dep_hash


def test_local_package_files_are_part_of_the_environment(tmp_path: Path) -> None:
    files = {"requirements.txt": "-c constraints.txt\n./localpkg\n./wheels/w-1-py3-none-any.whl\n",
             "constraints.txt": "six==1.12.0\n", "wheels/w-1-py3-none-any.whl": b"PK\x03\x04",
             "localpkg/pyproject.toml": "[project]\nname='localpkg'\n",
             "localpkg/localpkg/__init__.py": "X = 1\n", "localpkg/.git/HEAD": "ref\n"}
    spec = spec_of(checkout(tmp_path / "a", files))
    assert set(spec.files) == {"requirements.txt", "constraints.txt",
                               "wheels/w-1-py3-none-any.whl", "localpkg/pyproject.toml",
                               "localpkg/localpkg/__init__.py"}
    changed = spec_of(checkout(tmp_path / "b", {**files,
                                                "localpkg/localpkg/__init__.py": "X = 2\n"}))
    assert changed.dep_hash != spec.dep_hash


# Repository-relative paths ----------------------------------------------------------------
def test_references_and_rewrite() -> None:
    text = (b"-r base.txt\n--constraint=../c.txt\n./wheels/x-1-py3-none-any.whl\n-e .\n"
            b"pkg @ file:./vendor/pkg  # a comment\n-f ./wheels\nsix==1.12.0\n"
            b"git+https://example.com/x.git\n")
    refs = dependencies.references(text, "app/requirements.txt")
    assert [(r.kind, r.relpath) for r in refs] == [
        ("include", "app/base.txt"), ("include", "c.txt"),
        ("local", "app/wheels/x-1-py3-none-any.whl"), ("local", "app"),
        ("local", "app/vendor/pkg"), ("local", "app/wheels")]
    out = dependencies.rewrite(text, "app/requirements.txt", "app", "/src").decode()
    assert out.splitlines() == [
        "-r base.txt", "--constraint=../c.txt", "/src/app/wheels/x-1-py3-none-any.whl",
        "/src/app", "pkg @ file:///src/app/vendor/pkg", "-f /src/app/wheels", "six==1.12.0",
        "git+https://example.com/x.git"]


@pytest.mark.parametrize("line", ["-r ../../etc/passwd", "/etc/passwd.whl", "-e /opt/pkg",
                                  "x @ file:///etc/x", "-c ../outside.txt"])
def test_paths_outside_the_repository_are_refused(tmp_path: Path, line: str) -> None:
    root = checkout(tmp_path, {"requirements.txt": f"{line}\n"})
    with pytest.raises(BuildError) as err:
        spec_of(root)
    assert "outside the repository" in str(err.value)


def test_a_named_file_linked_out_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-VALUE\n")
    root = checkout(tmp_path, {"requirements.txt": "-r base.txt\n"})
    (root / "base.txt").symlink_to(secret)
    with pytest.raises(BuildError) as err:
        spec_of(root)
    assert "base.txt" in str(err.value) and "outside the repository" in str(err.value)
    assert "TOPSECRET" not in str(err.value)
    root2 = checkout(tmp_path / "2", {"requirements.txt": "./pkg\n", "pkg/setup.py": ""})
    (root2 / "pkg" / "leak.txt").symlink_to(secret)
    with pytest.raises(BuildError) as err:
        spec_of(root2)
    assert "pkg/leak.txt" in str(err.value) and "TOPSECRET" not in str(err.value)


def test_a_missing_named_file_fails_with_its_name(tmp_path: Path) -> None:
    root = checkout(tmp_path, {"requirements.txt": "-r nowhere.txt\n"})
    with pytest.raises(BuildError, match="nowhere.txt, which is not in the repository"):
        spec_of(root)


def test_local_package_folder_is_bounded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(dependencies, "MAX_TREE_FILES", 3)
    root = checkout(tmp_path, {"requirements.txt": ".\n",
                               **{f"f{i}.py": "" for i in range(5)}})
    with pytest.raises(BuildError, match="more than 3 files"):
        spec_of(root)


def test_plan_writes_rewritten_requirements(tmp_path: Path) -> None:
    root = checkout(tmp_path, {"app/requirements.txt": "-r base.txt\n-e ..\n",
                               "app/base.txt": "./pkg\n", "app/pkg/setup.py": "",
                               "setup.py": "", "app/main.py": ""})
    plan = spec_of(root, "app/main.py").install_plan()
    built = plan.build_files("/b")
    assert built["app/requirements.txt"] == b"-r base.txt\n/b\n"
    assert built["app/base.txt"] == b"/b/app/pkg\n"
    assert plan.requirements_path == "app/requirements.txt"


# Pipfile ------------------------------------------------------------------------------------
PIPFILE = b"""[packages]
six = "*"
requests = {version = ">=2.0", extras = ["socks"]}
local = {path = "./vendor/local"}

[dev-packages]
pytest = "*"

[requires]
python_version = "3.10"
"""


def test_pipfile_packages_without_a_lock() -> None:
    out = pipfile_requirements(PIPFILE, None, "Pipfile")
    assert out.requirements == ["six", "requests[socks]>=2.0", "./vendor/local"]
    assert out.python == "3.10"


def test_pipfile_lock_gives_exact_versions() -> None:
    lock = lock_json({"six": {"version": "==1.12.0", "hashes": ["sha256:00"],
                              "markers": "python_version >= '2.7'"}},
                     {"pytest": {"version": "==8.0"}})
    out = pipfile_requirements(PIPFILE, lock.encode(), "app/Pipfile")
    assert out.requirements == ["six==1.12.0 ; python_version >= '2.7'"]
    assert any("app/Pipfile.lock" in note for note in out.notes)


def test_pipfile_python_version_chooses_python_unless_the_app_does(tmp_path: Path) -> None:
    root = checkout(tmp_path, {"Pipfile": PIPFILE.replace(b'local = {path = "./vendor/local"}\n',
                                                          b"")})
    assert spec_of(root).python_version == "3.10"
    assert spec_of(root, python="3.12").python_version == "3.12"
    (root / ".python-version").write_text("3.11\n")
    assert spec_of(root).python_version == "3.11"


def test_broken_pipfile_names_the_file(tmp_path: Path) -> None:
    root = checkout(tmp_path, {"Pipfile": "[packages\nsix=", "Pipfile.lock": "{"})
    with pytest.raises(BuildError, match="Pipfile is not a valid Pipfile"):
        spec_of(root)


# environment.yml ----------------------------------------------------------------------------
ENV_YML = b"""name: x
channels: [conda-forge]
dependencies:
  - _libgcc_mutex=0.1=main
  - libgcc-ng>=11
  - mkl
  - cudatoolkit=11.8
  - python=3.11.4
  - pip
  - six=1.12
  - numpy>=1.26,<2
  - conda-forge::pandas==2.1.0=py311_0
  - scipy 1.11
  - pip:
      - tomli==1.2.3
      - -r extra.txt
"""


def test_conda_packages_map_to_the_index() -> None:
    out = conda_requirements(ENV_YML, "environment.yml")
    assert out.requirements == ["six==1.12.*", "numpy>=1.26,<2", "pandas==2.1.0",
                                "scipy==1.11.*", "tomli==1.2.3", "-r extra.txt"]
    assert out.python == "3.11"
    assert out.conda_names == ("six", "numpy", "pandas", "scipy")
    left_out = next(n for n in out.notes if n.startswith("Leaving out"))
    for name in ("_libgcc_mutex", "libgcc-ng", "mkl", "cudatoolkit", "pip"):
        assert name in left_out


def test_environment_yml_errors_name_the_file() -> None:
    with pytest.raises(FormatError, match="no `dependencies:` list"):
        conda_requirements(b"name: x\n", "app/environment.yml")
    with pytest.raises(FormatError, match="not valid YAML"):
        conda_requirements(b"dependencies: [\n", "environment.yml")


def test_unknown_conda_package_error_is_explained() -> None:
    plan = install_plan({"environment.yml": b"dependencies:\n  - r-ggplot2=3.4\n"},
                        "environment.yml")
    uv = ("  x No solution found when resolving dependencies:\n  `-> Because r-ggplot2 was "
          "not found in the package registry and you require r-ggplot2==3.4.*, we can "
          "conclude that your requirements are unsatisfiable.")
    message = plan.explain_failure(uv)
    assert message is not None and message.startswith("r-ggplot2 from environment.yml")
    assert "no conda channel is reachable on this platform" in message
    assert plan.explain_failure("Because six was not found in the package registry") is None


# pyproject.toml -----------------------------------------------------------------------------
POETRY = b"""[tool.poetry]
name = "x"
version = "0.1.0"
package-mode = false

[tool.poetry.dependencies]
python = "^3.9"
six = "~1.12"
tomli = "^1.2.3"
zero = "^0.2.3"
tiny = "^0.0.3"
anything = "*"
exact = "1.4.2"
ranged = ">=1,<3"
extra = {version = "^2.1", extras = ["a", "b"], markers = "sys_platform == 'linux'"}

[tool.poetry.group.dev.dependencies]
pytest = "*"
"""


def test_poetry_constraints_in_pep_440_terms() -> None:
    out = pyproject_requirements(POETRY, "pyproject.toml")
    assert out is not None
    assert out.requirements == [
        "six>=1.12,<1.13", "tomli>=1.2.3,<2.0.0", "zero>=0.2.3,<0.3.0", "tiny>=0.0.3,<0.0.4",
        "anything", "exact==1.4.2", "ranged>=1,<3",
        "extra[a,b]>=2.1,<3.0 ; sys_platform == 'linux'"]


def test_poetry_or_constraint_is_refused() -> None:
    with pytest.raises(FormatError, match="uses `||`"):
        pyproject_requirements(b'[tool.poetry.dependencies]\nsix = "^1.0 || ^2.0"\n',
                               "pyproject.toml")


def test_pep_621_dependencies_and_dynamic() -> None:
    out = pyproject_requirements(b'[project]\nname = "x"\ndependencies = ["six==1.12.0"]\n'
                                 b'[project.optional-dependencies]\ndev = ["pytest"]\n'
                                 b'[dependency-groups]\ndev = ["pytest"]\n', "pyproject.toml")
    assert out is not None and out.requirements == ["six==1.12.0"]
    assert pyproject_requirements(b'[project]\nname = "x"\ndynamic = ["dependencies"]\n',
                                  "pyproject.toml") is None
    plan = install_plan({"pyproject.toml": b'[project]\nname="x"\ndynamic=["dependencies"]\n'},
                        "pyproject.toml")
    assert plan.mode == "pyproject-build"


def test_poetry_project_installs_dependencies_not_the_project(tmp_path: Path) -> None:
    plan = spec_of(checkout(tmp_path, {"pyproject.toml": POETRY})).install_plan()
    assert plan.mode == "requirements" and plan.requirements_path == ".stcloud-requirements.txt"
    assert b"six>=1.12,<1.13" in plan.build_files("/b")[".stcloud-requirements.txt"]


def test_failure_message_names_the_file_to_fix() -> None:
    plan = install_plan({"app/Pipfile": b"[packages]\nsix = '==99'\n"}, "app/Pipfile")
    message = "Installing the dependencies of .stcloud-requirements.txt failed."
    assert plan.failure_message(message) == \
        "Installing the dependencies of app/Pipfile failed."
