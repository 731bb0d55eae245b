"""Test-wide settings: no network, CPU, deterministic."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Tests marked `mesh` need 8 devices. JAX fixes its device count when it starts, so they run in one subprocess
# (tests/test_mesh_runner.py) that sets FXFORMERS_MESH_TESTS=1: there this file asks for 8 simulated CPU devices.
MESH_DEVICES = 8
if os.environ.get("FXFORMERS_MESH_TESTS") == "1":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={MESH_DEVICES}"
    ).strip()


def pytest_configure(config):
    config.addinivalue_line("markers", "mesh: needs 8 simulated devices; run by tests/test_mesh_runner.py")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FXFORMERS_MESH_TESTS") == "1":
        return
    import pytest

    skip = pytest.mark.skip(reason="needs 8 devices: run in a subprocess by tests/test_mesh_runner.py")
    for item in items:
        if item.get_closest_marker("mesh") is not None:
            item.add_marker(skip)
