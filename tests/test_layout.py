"""Project-level contracts: generated protobuf code is fresh, and the core stays free of Serve and gRPC."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("protos_generate", PROJECT / "protos" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_protobuf_code_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(PROJECT / "protos" / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_stale_check_catches_an_edit(tmp_path: Path) -> None:
    generator = _generator()
    copy = tmp_path / "pb"
    shutil.copytree(PROJECT / "services" / "pb", copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert generator.stale_files(copy) == []
    target = copy / "radiogenomics" / "v1" / "common_pb2.py"
    target.write_text(target.read_text() + "\n# hand edit\n")
    (copy / "radiogenomics" / "v1" / "common_pb2.pyi").unlink()
    assert generator.stale_files(copy) == ["radiogenomics/v1/common_pb2.py", "radiogenomics/v1/common_pb2.pyi"]


def test_generated_code_imports_from_services_pb() -> None:
    from services.pb.radiogenomics.v1 import common_pb2

    profile = common_pb2.ExpressionProfile(profile_id="p1", raw_float32=b"\x00\x00\x80?")
    assert common_pb2.ExpressionProfile.FromString(profile.SerializeToString()).raw_float32 == b"\x00\x00\x80?"
    assert common_pb2.DESCRIPTOR.package == "radiogenomics.v1"


def test_core_never_imports_serve_grpc_or_services() -> None:
    forbidden = ("grpc", "ray.serve", "services", "tune")
    offenders = []
    for path in (PROJECT / "radiogenomics").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if any(n == f or n.startswith(f + ".") for f in forbidden)]
    assert offenders == []


def test_generated_messages_pickle_by_reference() -> None:
    """Ray pickles request messages between the proxy and replicas: the classes must be importable by name."""
    import pickle

    from ray import cloudpickle

    from services.pb.radiogenomics.v1 import common_pb2

    message = common_pb2.ExpressionProfile(profile_id="p", raw_float32=b"\x00\x00\x80?")
    assert common_pb2.ExpressionProfile.__module__ == "services.pb.radiogenomics.v1.common_pb2"
    assert pickle.loads(cloudpickle.dumps(message)) == message
