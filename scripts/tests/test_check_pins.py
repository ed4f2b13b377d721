"""requirements.txt as scripts/check_pins.py reduces it per Python version (offline: markers only;
the resolution against the package index needs the network and is run by hand)."""
import os
import re

import pytest

import check_pins

VERSIONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
PACKAGES = {"h5py", "numpy", "scipy", "matplotlib", "pandas", "pyarrow", "pytest", "setuptools"}


def pinned(version, arch="x86_64"):
    out = {}
    for line in check_pins.pins_for(os.path.join(check_pins.REPO, "requirements.txt"), version,
                                    arch):
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)", line)
        assert m, f"not an exact pin without a marker: {line}"
        assert m.group(1) not in out, f"Python {version}: {m.group(1)} pinned twice"
        out[m.group(1)] = m.group(2)
    return out


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_every_claimed_python_gets_exactly_one_pin_per_package(version, arch):
    assert set(pinned(version, arch)) == PACKAGES


def test_markers_pick_the_release_of_each_python():
    # numpy 2.0 is the last release with wheels for 3.9, 2.2 the last for 3.10.
    assert pinned("3.9")["numpy"].startswith("2.0.")
    assert pinned("3.10")["numpy"].startswith("2.2.")
    assert pinned("3.12")["numpy"] == pinned("3.13")["numpy"]
    assert pinned("3.10")["scipy"] != pinned("3.12")["scipy"]


def test_missing_requirements_file_exits_2(tmp_path, capsys):
    assert check_pins.main(["--requirements", str(tmp_path / "none.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
