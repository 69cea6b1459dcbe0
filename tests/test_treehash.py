"""benchmarks/treehash.py reproduces git's tree hash (used to name the csrc tree a GPU record verified)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / "benchmarks" / "treehash.py").exists(), reason="needs git and the source tree")
def test_tree_hash_matches_git(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from treehash import tree_hash

    repo = tmp_path / "r"
    (repo / "d" / "sub").mkdir(parents=True)
    (repo / "d" / "a.cu").write_text("kernel\n")
    (repo / "d" / "b-c.h").write_text("x")
    (repo / "d" / "sub" / "z.cpp").write_text("int main(){}\n")
    (repo / "d" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(repo / "d" / "run.sh", 0o755)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=repo, check=True, env=env)
    want = subprocess.run(["git", "rev-parse", "HEAD:d"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    assert tree_hash(str(repo / "d")) == want
