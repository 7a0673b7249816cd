"""The wheel carries templates/, tuned/ and profiles/, and an installed kernelgen finds them."""
import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, cwd=build)
    [path] = out.glob("kernelgen-*.whl")
    return path


def test_wheel_contains_data_folders(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (ROOT / "templates").glob("*.py"):
        assert f"kernelgen/templates/{path.name}" in names
    for path in (ROOT / "tuned").glob("*.json"):
        assert f"kernelgen/tuned/{path.name}" in names
    for key in ("h100", "h200", "a100", "l40s", "rtx4090"):
        assert f"kernelgen/profiles/{key}.json" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_wheel_finds_its_data(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    python = env_dir / "bin" / "python"
    if sys.prefix != sys.base_prefix:
        # Run from a virtual environment (torch installed there, as on the GPU image): a venv made
        # from it sees the base interpreter's packages only, so the new one gets this one's too.
        new_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        Path(new_site, "parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # Without PYTHONPATH: a source tree on it (as on the GPU machine) makes pip find kernelgen
    # already installed and skip the wheel.
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   env=clean_env)
    script = ("import kernelgen, kernelgen.paths as p, kernelgen.templates as t; "
              "from kernelgen.hardware import load_profiles; "
              "assert 'site-packages' in kernelgen.__file__, kernelgen.__file__; "
              "assert 'site-packages' in str(p.profiles_dir()); assert 'h100' in load_profiles(); "
              "assert 'site-packages' in t.__file__; print(sorted(t.all_templates()))")
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "TRITON_INTERPRET": "1"})
    assert result.returncode == 0, result.stderr
