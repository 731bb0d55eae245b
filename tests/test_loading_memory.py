"""Peak host memory of from_pretrained: near one copy of the checkpoint, whatever the file layout or the target.

Each load runs in a fresh process (scripts/memory_probe.py) and is measured as (peak RSS - RSS before the load) /
checkpoint bytes. Checkpoints are random, built without torch at real sizes: BERT-base (438 MB) and a Llama-shaped
decoder (495 MB).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "scripts" / "memory_probe.py"
LIMIT = 1.3  # x the checkpoint's bytes


def probe(*args: str, timeout: int = 600) -> dict:
    proc = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]) if args[0] != "make" else {}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    probe("make", "bert-base", str(root / "bert"))
    probe("make", "bert-base", str(root / "bert-sharded"), "--shard-size", "100MB")
    probe("make", "llama-500m", str(root / "llama"))
    yield root


@pytest.mark.parametrize("case", [
    ("bert", "BertModel"),
    ("bert-sharded", "BertModel"),
    ("bert", "BertForSequenceClassification", "--head", "3"),  # a new head: only it is initialised
    # a mesh without replication, so that the 8 simulated devices (all host memory) hold one copy
    ("llama", "LlamaForCausalLM", "--mesh", "fsdp=2,model=4", "--devices", "8"),
], ids=["single-file", "sharded", "new-head", "llama-on-mesh"])
def test_peak_rss_stays_near_the_checkpoint_size(folders, case):
    folder, class_name, *extra = case
    result = probe("load", str(folders / folder), "--class", class_name, *extra)
    assert result["checkpoint_bytes"] > 400e6
    assert result["ratio"] <= LIMIT, result


def test_a_bf16_load_of_an_fp32_file_peaks_near_the_bf16_size(folders):
    result = probe("load", str(folders / "llama"), "--class", "LlamaForCausalLM", "--dtype", "bfloat16")
    assert result["ratio"] <= LIMIT / 2, result
