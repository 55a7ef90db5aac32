"""The declared dependency ranges are the tested ones.

``.ci/run`` runs the suite a second time against the releases in
``.ci/oldest.txt``; this keeps that list equal to pyproject.toml's lower bounds, so
that raising a minimum without testing it (or the reverse) fails here.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _core_lower_bounds():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    for requirement in project["dependencies"]:
        name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(?:,<[0-9.]+)?",
                                     requirement).groups()
        bounds[name.lower()] = version
    return bounds


def test_skorch_is_bounded_below_its_next_major_version():
    """skvae overrides skorch's training loop (skvae._net.SKORCH_HOOKS): a new major
    release may change it, so it is admitted only once it has been tested."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    skorch = next(r for r in project["dependencies"] if r.startswith("skorch"))
    low, high = re.fullmatch(r"skorch>=([0-9]+)[0-9.]*,<([0-9]+)", skorch).groups()
    assert int(high) == int(low) + 1


def _oldest_pins():
    pins = {}
    for line in (ROOT / ".ci" / "oldest.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_oldest_pins_are_the_declared_lower_bounds():
    bounds = _core_lower_bounds()
    assert set(bounds) == {"numpy", "scipy", "pandas", "scikit-learn", "torch", "skorch"}
    pins = _oldest_pins()
    # torch is tested at the CPU wheel the project pins (README, .ci/run), not at 2.2
    assert pins == {name: version for name, version in bounds.items() if name != "torch"}
