"""The ways to install and test sam_lab agree with each other.

* ``environment.yml`` (conda) lists the same packages, with the same version ranges, as
  ``pyproject.toml``'s ``[project].dependencies`` plus its ``dev`` extra (pip).
* ``.ci/run`` runs ``make test``, and ``make test`` runs the unit tests and every notebook in
  ``lessons/`` and ``widgets/`` under nbval; ``make venv`` builds a missing ``.venv`` and only
  reinstalls when ``pyproject.toml`` changes.

environment.yml is read with PyYAML (``yaml.safe_load``, in the ``dev`` extra); the shape it
must have (top-level keys, a ``dependencies`` list of strings and one nested ``pip:`` list) is
checked, so a construct the comparison does not understand fails instead of being skipped.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ENVIRONMENT = ROOT / "environment.yml"

# conda-forge name -> PyPI name, for the packages whose names differ beyond the spelling
# normalisation below. (open_clip_torch on PyPI and open-clip-torch on conda-forge need no
# entry: they are the same name once normalised.)
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "matplotlib-base": "matplotlib",  # matplotlib without a GUI toolkit; same Python package
}
# conda entries that are the toolchain, not a dependency of sam_lab
CONDA_TOOLCHAIN = {"python", "pip"}


def normalize_name(name: str) -> str:
    """PEP 503 spelling: lowercase, runs of ``-``, ``_`` and ``.`` become one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def canonical_name(name: str) -> str:
    """The PyPI name a pyproject or conda entry stands for."""
    name = normalize_name(name)
    return CONDA_TO_PYPI.get(name, name)


# ------------------------------------------------------------------------- environment.yml


def parse_environment_yml(text: str) -> dict:
    """environment.yml as PyYAML reads it, after checking the shape the comparison relies on:
    a mapping whose ``dependencies`` is a list of strings and at most one ``{"pip": [strings]}``.
    Anything else raises ``ValueError`` saying what was found."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"environment.yml: expected a mapping at the top, got {type(data).__name__}")
    dependencies = data.get("dependencies")
    if not isinstance(dependencies, list):
        raise ValueError(f"environment.yml: expected 'dependencies' to be a list, got {type(dependencies).__name__}")
    for entry in dependencies:
        if isinstance(entry, dict):
            if list(entry) != ["pip"] or not all(isinstance(item, str) for item in entry["pip"] or []):
                raise ValueError(f"environment.yml: expected only a 'pip:' list of strings as a nested entry, got {entry!r}")
        elif not isinstance(entry, str):
            raise ValueError(f"environment.yml: expected each dependency to be a string, got {entry!r}")
    return data


# ------------------------------------------------------------------------- comparison


def _split_conda(spec: str) -> Tuple[str, str]:
    match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)", spec.strip())
    if not match:
        raise ValueError(f"environment.yml: cannot read conda spec {spec!r}")
    return match.group(1), match.group(2).replace(" ", "")


def _specifier(text: str, where: str) -> SpecifierSet:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise ValueError(
            f"{where}: {text!r} is not a pip-style version range (write 'name>=x', not conda's 'name=x')"
        ) from None


def pyproject_requirements(pyproject: dict) -> Dict[str, SpecifierSet]:
    """Canonical name -> version range for [project].dependencies plus the dev extra."""
    project = pyproject["project"]
    entries = list(project.get("dependencies", [])) + list(
        project.get("optional-dependencies", {}).get("dev", [])
    )
    requirements: Dict[str, SpecifierSet] = {}
    for entry in entries:
        requirement = Requirement(entry)
        requirements[canonical_name(requirement.name)] = requirement.specifier
    return requirements


def environment_requirements(environment: dict) -> Tuple[Dict[str, SpecifierSet], List[str]]:
    """Canonical name -> version range for the conda and pip lists, and any problems found
    while reading them (duplicates, unreadable entries). ``python``/``pip`` and pip options
    such as ``-e .`` (sam_lab itself) are left out; python is compared separately."""
    requirements: Dict[str, SpecifierSet] = {}
    problems: List[str] = []

    def add(name: str, specifier: SpecifierSet, origin: str) -> None:
        name = canonical_name(name)
        if name in requirements:
            problems.append(f"{name}: listed more than once in environment.yml ({origin})")
        requirements[name] = specifier

    for entry in environment.get("dependencies", []):
        if isinstance(entry, dict):
            for pip_entry in entry.get("pip", []):
                if pip_entry.startswith("-"):
                    continue  # pip options: -e ., -r file, --index-url ...
                requirement = Requirement(pip_entry)
                add(requirement.name, requirement.specifier, "pip")
            continue
        name, spec = _split_conda(entry)
        if normalize_name(name) in CONDA_TOOLCHAIN:
            continue
        try:
            add(name, _specifier(spec, f"environment.yml {name}"), "conda")
        except ValueError as error:
            problems.append(str(error))
    return requirements, problems


def environment_python(environment: dict) -> SpecifierSet | None:
    for entry in environment.get("dependencies", []):
        if isinstance(entry, str):
            name, spec = _split_conda(entry)
            if name == "python":
                return _specifier(spec, "environment.yml python")
    return None


def dependency_drift(pyproject: dict, environment: dict) -> List[str]:
    """Every difference between the two files, one readable line each; [] when they agree."""
    expected = pyproject_requirements(pyproject)
    found, problems = environment_requirements(environment)
    for name in sorted(set(expected) - set(found)):
        problems.append(f"{name}{expected[name]}: in pyproject.toml, missing from environment.yml")
    for name in sorted(set(found) - set(expected)):
        problems.append(f"{name}{found[name]}: in environment.yml, missing from pyproject.toml")
    for name in sorted(set(expected) & set(found)):
        if expected[name] != found[name]:
            problems.append(
                f"{name}: version range differs: pyproject.toml '{expected[name]}', "
                f"environment.yml '{found[name]}'"
            )
    requires_python = SpecifierSet(pyproject["project"].get("requires-python", ""))
    python = environment_python(environment)
    if python != requires_python:
        problems.append(
            f"python: requires-python is '{requires_python}', environment.yml has "
            f"'{python if python is not None else 'no python entry'}'"
        )
    return problems


def load_files(environment_text: str | None = None) -> Tuple[dict, dict]:
    pyproject = tomllib.loads(PYPROJECT.read_text())
    text = ENVIRONMENT.read_text() if environment_text is None else environment_text
    return pyproject, parse_environment_yml(text)


# ------------------------------------------------------------------------- tests: the files


def test_environment_yml_lists_the_same_dependencies_and_ranges_as_pyproject():
    pyproject, environment = load_files()
    assert dependency_drift(pyproject, environment) == []
    assert environment["name"] == "sam_lab"
    assert "conda-forge" in environment["channels"]


def test_names_are_normalised_and_conda_aliases_map_to_pypi_names():
    assert canonical_name("open_clip_torch") == canonical_name("open-clip-torch") == "open-clip-torch"
    assert canonical_name("PyTorch") == "torch"
    assert canonical_name("matplotlib-base") == "matplotlib"
    assert canonical_name("scikit_image") == "scikit-image"


def _without_line(text: str, package: str) -> str:
    lines = [line for line in text.splitlines() if not re.match(rf"\s*- {re.escape(package)}\b", line)]
    assert len(lines) == len(text.splitlines()) - 1, f"{package} is not listed once"
    return "\n".join(lines) + "\n"


def test_drift_is_caught_when_a_package_is_dropped_from_environment_yml(tmp_path):
    planted = tmp_path / "environment.yml"
    planted.write_text(_without_line(ENVIRONMENT.read_text(), "safetensors"))
    pyproject, environment = load_files(planted.read_text())
    assert dependency_drift(pyproject, environment) == [
        "safetensors>=0.4: in pyproject.toml, missing from environment.yml"
    ]


def test_drift_is_caught_when_a_pip_only_package_is_dropped():
    text = _without_line(ENVIRONMENT.read_text(), "segment-anything")
    pyproject, environment = load_files(text)
    assert dependency_drift(pyproject, environment) == [
        "segment-anything>=1.0: in pyproject.toml, missing from environment.yml"
    ]


def test_drift_is_caught_when_a_version_range_changes():
    text = ENVIRONMENT.read_text()
    assert text.count("- pytorch>=2.4\n") == 1
    pyproject, environment = load_files(text.replace("- pytorch>=2.4\n", "- pytorch>=2.3\n"))
    assert dependency_drift(pyproject, environment) == [
        "torch: version range differs: pyproject.toml '>=2.4', environment.yml '>=2.3'"
    ]


def test_drift_is_caught_when_pyproject_gains_a_dependency_or_python_moves():
    pyproject, environment = load_files()
    pyproject["project"]["dependencies"].append("einops>=0.7")
    pyproject["project"]["requires-python"] = ">=3.11"
    drift = dependency_drift(pyproject, environment)
    assert "einops>=0.7: in pyproject.toml, missing from environment.yml" in drift
    assert any(line.startswith("python: requires-python is '>=3.11'") for line in drift)


def test_drift_is_caught_for_extra_duplicate_and_conda_style_entries():
    text = ENVIRONMENT.read_text().replace(
        "  - pip\n", "  - pip\n  - einops>=0.7\n  - numpy>=1.24\n  - tqdm=4.66\n", 1
    )
    text = _without_line(text, "tqdm>=4.66")
    pyproject, environment = load_files(text)
    drift = dependency_drift(pyproject, environment)
    assert "einops>=0.7: in environment.yml, missing from pyproject.toml" in drift
    assert "numpy: listed more than once in environment.yml (conda)" in drift
    assert any("'=4.66' is not a pip-style version range" in line for line in drift)


def test_parser_rejects_shapes_the_comparison_does_not_understand():
    with pytest.raises(ValueError, match="'dependencies' to be a list, got dict"):
        parse_environment_yml("name: sam_lab\ndependencies: {python: 3.11}\n")
    with pytest.raises(ValueError, match="only a 'pip:' list"):
        parse_environment_yml("name: sam_lab\ndependencies:\n  - conda: [numpy]\n")
    with pytest.raises(ValueError, match="each dependency to be a string"):
        parse_environment_yml("name: sam_lab\ndependencies:\n  - 3.11\n")


# ------------------------------------------------------------------------- tests: CI and make


def _command_lines(path: Path) -> List[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_ci_script_is_strict_bash_that_runs_make_test():
    script = ROOT / ".ci" / "run"
    assert script.stat().st_mode & stat.S_IXUSR, ".ci/run must be executable"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") or text.startswith("#!/bin/bash")
    lines = _command_lines(script)
    assert "set -euo pipefail" in lines
    assert any(re.match(r"make\s+(.*\s)?test(\s|$)", line) for line in lines), lines
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(script)], check=True)


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def _fake_venv(tmp_path: Path) -> Path:
    """A folder that make takes for an installed .venv (pyvenv.cfg and a stamp newer than
    pyproject.toml), so targets run without creating or installing anything."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").touch()
    (venv / ".installed").touch()
    now = time.time()
    stamp_time = max(now, PYPROJECT.stat().st_mtime + 1)
    os.utime(venv / "pyvenv.cfg", (stamp_time - 10, stamp_time - 10))
    os.utime(venv / ".installed", (stamp_time, stamp_time))
    return venv


def _make(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@needs_make
def test_make_test_runs_nbstripout_unit_tests_and_nbval_over_lessons_and_widgets(tmp_path):
    plan = _make("-n", "test", f"VENV={_fake_venv(tmp_path)}").stdout
    assert "-m nbstripout --verify" in plan
    assert "-m pytest tests -q" in plan
    nbval = [line for line in plan.splitlines() if "--nbval-lax" in line]
    assert nbval and all("--nbval-current-env" in line for line in nbval)
    assert "for d in lessons widgets" in plan
    assert "MPLBACKEND=Agg PYTHONHASHSEED=0" in plan
    # the order: notebook format, unit tests, notebooks
    assert plan.index("nbstripout") < plan.index("pytest tests") < plan.index("--nbval-lax")


@needs_make
def test_make_venv_creates_a_missing_venv_and_installs_the_dev_extra(tmp_path):
    plan = _make("-n", "venv", f"VENV={tmp_path / 'new'}", "PYTHON=python3").stdout
    assert f"python3 -m venv {tmp_path / 'new'}" in plan
    assert f"{tmp_path / 'new'}/bin/python -m pip install -q -e \".[dev]\"" in plan


@needs_make
def test_make_venv_does_nothing_when_the_install_is_newer_than_pyproject(tmp_path):
    plan = _make("-n", "venv", f"VENV={_fake_venv(tmp_path)}").stdout
    assert "pip install" not in plan and "-m venv" not in plan


def _notebook(path: Path, *cells: Tuple[str, str], output: bool = False) -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.v4.new_notebook()
    for kind, source in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if output and kind == "code":
            cell.execution_count = 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
        notebook.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))


@needs_make
def test_notebook_format_check_fails_on_outputs_and_passes_when_stripped(tmp_path):
    venv = _fake_venv(tmp_path)
    folder = tmp_path / "lessons"
    _notebook(folder / "clean.ipynb", ("markdown", "# A lesson"), ("code", "x = 1"))
    args = ("test-notebook-format", f"VENV={venv}", f"VENV_PYTHON={sys.executable}", f"NOTEBOOK_DIRS={folder}")
    assert "clean.ipynb" in _make(*args).stdout
    _notebook(folder / "dirty.ipynb", ("code", "print('hello')"), output=True)
    result = _make(*args, check=False)
    assert result.returncode != 0
    assert "dirty.ipynb" in result.stdout + result.stderr


@needs_make
def test_notebook_run_skips_missing_folders_and_counts_no_cells_as_success(tmp_path):
    venv = _fake_venv(tmp_path)
    prose = tmp_path / "prose"
    _notebook(prose / "prose.ipynb", ("markdown", "only prose, no code cells"))
    result = _make(
        "test-notebooks",
        f"VENV={venv}",
        f"VENV_PYTHON={sys.executable}",
        f"NOTEBOOK_DIRS={tmp_path / 'absent'} {prose}",
    )
    assert f"no notebooks in {tmp_path / 'absent'}/; skipped" in result.stdout
    assert "no notebook cells collected" in result.stdout  # pytest exit code 5, taken as success


@needs_make
def test_notebook_run_fails_when_an_assert_cell_fails(tmp_path):
    pytest.importorskip("nbval")
    venv = _fake_venv(tmp_path)
    folder = tmp_path / "widgets"
    _notebook(folder / "broken.ipynb", ("code", "assert 1 + 1 == 3, 'arithmetic is broken'"))
    result = _make(
        "test-notebooks", f"VENV={venv}", f"VENV_PYTHON={sys.executable}", f"NOTEBOOK_DIRS={folder}",
        check=False,
    )
    assert result.returncode != 0
    assert "1 failed" in result.stdout
