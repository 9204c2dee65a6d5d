"""The two Python distributions as pip builds them: the server without a second copy of the client,
the client with its stubs and type information, both with a version, a licence and project URLs."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from errorreplay_server.settings import Settings
from errorreplay_server.store.factory import open_store

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(source: Path, out: Path) -> zipfile.ZipFile:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def metadata_of(wheel: zipfile.ZipFile) -> dict[str, list[str]]:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(name).decode())
    return {key: message.get_all(key) or [] for key in set(message.keys())}


def test_server_wheel_ships_only_the_server(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT, tmp_path)
    top = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"errorreplay_server"}
    meta = metadata_of(wheel)
    assert meta["Name"] == ["errorreplay"] and meta["Version"] == ["0.2.0"]
    assert meta["License-Expression"] == ["Apache-2.0"] and meta["Project-URL"]
    requires = meta["Requires-Dist"]
    assert "errorreplay-client==0.2.0" in requires
    assert not [r for r in requires if r.startswith("neo4j") and "extra ==" not in r]  # the driver is an extra
    assert any(r.startswith("neo4j") and 'extra == "neo4j"' in r for r in requires)


def test_client_wheel_ships_the_client_stubs_and_types(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT / "clients" / "python", tmp_path)
    names = set(wheel.namelist())
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"errorreplay"}
    for path in (
        "errorreplay/py.typed",
        "errorreplay/sdk.py",
        "errorreplay/integrations/grpc.py",
        "errorreplay/v1/message_pb2.pyi",
        "errorreplay/v1/service_pb2_grpc.pyi",
    ):
        assert path in names
    meta = metadata_of(wheel)
    assert meta["Name"] == ["errorreplay-client"] and meta["License-Expression"] == ["Apache-2.0"]
    runtime = sorted(re.split(r"[<>=!~ ;]", r)[0] for r in meta["Requires-Dist"] if "extra ==" not in r)
    assert runtime == ["googleapis-common-protos", "grpcio", "grpcio-status", "protobuf"]


def test_version_flag() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "errorreplay"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.strip() == "errorreplay 0.2.0 (errorreplay-client 0.2.0)"


def test_neo4j_store_without_the_extra_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "neo4j", None)  # as if the driver were not installed: import fails
    monkeypatch.delitem(sys.modules, "errorreplay_server.store.neo4j", raising=False)
    settings = Settings(data_dir=tmp_path, store="neo4j")
    with pytest.raises(ValueError, match=r"pip install 'errorreplay\[neo4j\]'"):
        open_store(settings)
