"""`dinov2-ros weights list|fetch|verify` through `dinov2_ros.cli.main`, against a local HTTP server."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dinov2_ros.cli import main

HEAD = "dinov2_vits14_nyu_linear_head"
CONTENT = b"head weights " * 1000


def test_list_shows_every_file_and_what_is_cached(cache_dir: Path, capsys) -> None:
    cache_dir.mkdir()
    (cache_dir / f"{HEAD}.pth").write_bytes(CONTENT)
    assert main(["weights", "list", "--cache-dir", str(cache_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cache: {cache_dir}"
    assert len(lines) == 1 + 24
    assert any(line.startswith(f"cached   {HEAD} ") for line in lines)
    assert any(line.startswith("missing  dinov2_vitg14_reg4_pretrain ") for line in lines)


def test_fetch_then_verify(http_server, cache_dir: Path, capsys) -> None:
    http_server.files[f"/dinov2_vits14/{HEAD}.pth"] = CONTENT
    argv = ["weights", "fetch", HEAD, "--cache-dir", str(cache_dir), "--mirror", http_server.url]
    assert main(argv) == 0
    assert f"{HEAD}: {cache_dir / HEAD}.pth" in capsys.readouterr().out
    assert main(["weights", "verify", "--cache-dir", str(cache_dir)]) == 0
    digest = hashlib.sha256(CONTENT).hexdigest()
    assert capsys.readouterr().out == f"ok  {HEAD}.pth  sha256 {digest}  (no reference hash in the registry)\n"


def test_fetch_failure_returns_1_with_the_offline_message(http_server, cache_dir: Path, caplog) -> None:
    argv = ["weights", "fetch", "vits14", "--cache-dir", str(cache_dir), "--mirror", http_server.url]
    assert main(argv) == 1
    assert f"place the file at {cache_dir}/dinov2_vits14_pretrain.pth" in caplog.text


def test_verify_reports_missing_and_unknown_names(cache_dir: Path, caplog) -> None:
    assert main(["weights", "verify", "vits14", "--cache-dir", str(cache_dir)]) == 1
    assert "dinov2_vits14_pretrain.pth is not cached" in caplog.text
    assert main(["weights", "verify", "vitq14", "--cache-dir", str(cache_dir)]) == 1
    assert "unknown weight file 'vitq14'" in caplog.text
