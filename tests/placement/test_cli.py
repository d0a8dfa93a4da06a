"""``linepool serve`` refuses bad flags at once, naming the flag, with exit code 2 and no traceback."""

import os
import pathlib
import subprocess
import sys

import pytest

from linepool.sandbox.kubeapi import KubeApiServer


@pytest.mark.parametrize(("flags", "words"), [
    (["--database", "http://db.example/placements"], "--database 'http://db.example/placements'"),
    (["--database", "sqlite://"], "name the SQLite file"),
    (["--database", "sqlite:///p.db?synchronous=sometimes"], "synchronous must be"),
    (["--listen", "localhost"], "--listen 'localhost': expected HOST:PORT"),
    (["--listen", "127.0.0.1:99999"], "--listen"),
    (["--token-file", "/nonexistent/tokens"], "--token-file /nonexistent/tokens"),
    (["--token-file", "EMPTY"], "lists no token"),
])
def test_bad_flags_exit_2_naming_the_flag(kube: KubeApiServer, tmp_path: pathlib.Path, flags: list[str],
                                          words: str) -> None:
    empty = tmp_path / "empty-tokens"
    empty.write_text("# no tokens yet\n\n")
    flags = [str(empty) if flag == "EMPTY" else flag for flag in flags]
    env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig"))}
    done = subprocess.run([sys.executable, "-m", "linepool", "serve", *flags], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr
