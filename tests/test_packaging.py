"""The wheel as a new user gets it: built, installed into a fresh virtualenv outside the
repository, and run from a folder that holds its own ``models`` package."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import PHOTOS, REPO

pytestmark = pytest.mark.integration


def run(*args, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def in_docker_context(path: str) -> bool:
    """Whether the image's build context holds ``path`` under the root .dockerignore (Docker's
    rules: patterns match the path or a folder above it; the last pattern that matches wins)."""
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    kept = True
    for rule in rules:
        pattern = rule.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):  # at any depth: a folder or file of that name
            matched = any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if matched:
            kept = rule.startswith("!")
    return kept


def docker_context(into: Path) -> Path:
    """The repository's tracked files the image is built from, copied into ``into``."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in filter(in_docker_context, tracked):
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, into / name)
    return into


def test_the_image_is_built_from_the_wheel_and_its_context_holds_only_what_the_wheel_needs():
    for stray in (".venv/lib/site.py", ".columnist/db/data.bin", "deploy/kafka/libs/kafka.jar", "tests/data/x.jpg",
                  "bench/results/r.json", ".git/HEAD", "streams/__pycache__/x.pyc"):
        assert not in_docker_context(stray), stray
    for needed in ("pyproject.toml", "streams/worker/service.py", "models/tiny-clip/visual.onnx", "vocab/space.yaml",
                   "deploy/clickhouse/schema.sql"):
        assert in_docker_context(needed), needed
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert "COPY --from=wheel /wheels /wheels" in final_stage and "COPY . " not in final_stage
    assert 'CMD ["columnist", "worker"]' in final_stage


def test_the_wheel_installs_one_package_and_runs_from_a_folder_with_its_own_models(tmp_path):
    """Built from the image's build context (what .dockerignore lets through), as the Dockerfile does."""
    context = docker_context(tmp_path / "context")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
        context, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("columnist-*.whl"))
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"columnist"}

    # a fresh virtualenv with the wheel alone; its dependencies come from this environment's
    # site-packages as a plain path (so this environment's editable install is not seen)
    run(sys.executable, "-m", "venv", "--without-pip", tmp_path / "venv", cwd=tmp_path)
    fresh = tmp_path / "venv" / "bin"
    run(sys.executable, "-m", "pip", "--python", fresh / "python", "install", "-q", "--no-deps", wheel, cwd=tmp_path)
    site = run(fresh / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path)
    Path(site.stdout.strip(), "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "ml-project"  # a user's folder with a models/ package of its own
    (work / "models").mkdir(parents=True)
    (work / "models" / "__init__.py").write_text("")
    (work / "models" / "images.py").write_text("raise ImportError('this is the user\\'s own models package')\n")
    db = f"chdb://{tmp_path / 'db'}"
    run(fresh / "columnist", "--version", cwd=work)
    run(fresh / "columnist", "tag", PHOTOS, "--db", db, cwd=work)
    counted = run(fresh / "python", "-m", "columnist", "query", "--db", db,
                  "SELECT count() AS images FROM columnist.images FINAL", cwd=work)
    assert counted.stdout.split() == ["images", str(len(list(PHOTOS.glob("*.jpg"))))]
    imported = run(fresh / "python", "-c", "import columnist.store.clickhouse as m; print(m.__file__)", cwd=work)
    assert str(tmp_path / "venv") in imported.stdout
