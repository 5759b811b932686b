"""The README's table of exit codes, every example run as a user runs it.

The table is read from README.md: each example command of each row is run in its own
process and must end with that row's code, in a line or two, without a traceback. Nothing
needs Kafka: "(no Kafka)" points the command at a port nobody listens on; "while a worker
owns the database" holds the database open in another process first.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from columnist.models.registry import resolve_model_dir
from columnist.models.spec import ModelSpec
from deploy.local import free_port
from tests.conftest import PHOTOS, REPO

pytestmark = pytest.mark.integration

HOLDER = """
import sys
from columnist.store import connect
store = connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def examples() -> list[tuple[int, str]]:
    """(exit code, example) for every example in the README's exit-code table."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("**Exit codes.**", 1)[1].split("\n\n", 2)[1]
    found = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            for command, note in re.findall(r"`(columnist [^`]+)`( \(no Kafka\)| while a worker owns the database)?",
                                            cells[2]):
                found.append((int(cells[0]), command + note))
    return found


def test_the_table_names_every_kind_of_failure():
    codes = {code for code, _ in examples()}
    assert codes == {1, 2, 3, 4, 5} and len(examples()) >= 10


@pytest.mark.parametrize("code, example", examples())
def test_each_example_ends_with_its_code(code, example, tmp_path):
    db = tmp_path / "db"
    subprocess.run([sys.executable, "-c", "import sys; from columnist.store import connect; connect(sys.argv[1])",
                    f"chdb://{db}"], check=True, timeout=120)  # a database for the examples that read one
    broken = tmp_path / "BROKEN.yaml"
    broken.write_text("name: space\nversion: 1\nattributes:\n  - {code: Bad-Code, description: x}\n")
    command = example.replace(" (no Kafka)", "").replace(" while a worker owns the database", "")
    model = tmp_path / "BROKEN-MODEL"  # the tiny model, its image tower replaced by bytes that are not ONNX
    if "BROKEN-MODEL" in command:
        shutil.copytree(resolve_model_dir("tiny-clip"), model)
        (model / ModelSpec.read(model).visual).write_bytes(b"not an onnx model")
    args = [a.replace("PHOTOS", str(PHOTOS)).replace("BROKEN.yaml", str(broken)).replace("BROKEN-MODEL", str(model))
            for a in shlex.split(command)]
    env = {**os.environ, "COLUMNIST_DB": f"chdb://{db}", "COLUMNIST_KAFKA": f"127.0.0.1:{free_port()}",
           "COLUMNIST_RUN_DIR": str(tmp_path / "run"), "HOME": str(tmp_path)}
    holder = None
    if "while a worker owns the database" in example:
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, f"chdb://{db}"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "holding"
    try:
        result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=300)
    finally:
        if holder is not None:
            holder.stdin.close()
            holder.wait(timeout=60)
    assert result.returncode == code, (example, result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
