"""`dinov2-ros weights list|fetch|verify` through `dinov2_ros.cli.main`, against a local HTTP server."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import torch

from dinov2_ros.cli import main

HEAD = "dinov2_vits14_nyu_linear_head"


def head_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"meta": {}, "state_dict": {"decode_head.conv_depth.bias": torch.zeros(256)}}, buffer)
    return buffer.getvalue()


CONTENT = head_bytes()


def test_list_shows_every_file_and_what_is_cached(cache_dir: Path, capsys) -> None:
    cache_dir.mkdir()
    (cache_dir / f"{HEAD}.pth").write_bytes(CONTENT)
    assert main(["weights", "list", "--cache-dir", str(cache_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cache: {cache_dir}"
    assert len(lines) == 1 + 27
    assert any(line.startswith(f"cached   {HEAD} ") for line in lines)
    assert any(line.startswith("missing  dinov2_vitg14_reg4_pretrain ") for line in lines)


def test_fetch_then_verify(http_server, cache_dir: Path, capsys, caplog) -> None:
    http_server.files[f"/dinov2_vits14/{HEAD}.pth"] = CONTENT
    argv = ["weights", "fetch", HEAD, "--cache-dir", str(cache_dir), "--mirror", http_server.url]
    assert main(argv) == 0
    assert f"{HEAD}: {cache_dir / HEAD}.pth" in capsys.readouterr().out
    assert main(["weights", "verify", "--cache-dir", str(cache_dir)]) == 0
    digest = hashlib.sha256(CONTENT).hexdigest()
    assert (
        capsys.readouterr().out == f"ok  {HEAD}.pth  sha256 {digest}  (matches the sha256 recorded at its download)\n"
    )
    (cache_dir / f"{HEAD}.pth").write_bytes(CONTENT[:-1] + b"!")
    assert main(["weights", "verify", HEAD, "--cache-dir", str(cache_dir)]) == 1
    assert f"FAILED {cache_dir / HEAD}.pth changed since its sha256 was recorded at download" in caplog.text


def test_fetch_failure_returns_1_with_the_offline_message(http_server, cache_dir: Path, caplog) -> None:
    argv = ["weights", "fetch", "vits14", "--cache-dir", str(cache_dir), "--mirror", http_server.url]
    assert main(argv) == 1
    assert f"place the file at {cache_dir}/dinov2_vits14_pretrain.pth" in caplog.text


def test_verify_reports_missing_and_unknown_names(cache_dir: Path, caplog) -> None:
    assert main(["weights", "verify", "vits14", "--cache-dir", str(cache_dir)]) == 1
    assert "dinov2_vits14_pretrain.pth is not cached" in caplog.text
    assert main(["weights", "verify", "vitq14", "--cache-dir", str(cache_dir)]) == 1
    assert "unknown weight file 'vitq14'" in caplog.text


def test_verify_with_nothing_cached_says_so(cache_dir: Path, capsys) -> None:
    assert main(["weights", "verify", "--cache-dir", str(cache_dir)]) == 0
    assert f"nothing to verify: no weight file is cached in {cache_dir}" in capsys.readouterr().out


def test_verify_records_a_hand_placed_file_and_names_files_that_are_no_checkpoint(
    cache_dir: Path, capsys, caplog
) -> None:
    cache_dir.mkdir()
    (cache_dir / f"{HEAD}.pth").write_bytes(CONTENT)
    assert main(["weights", "verify", HEAD, "--cache-dir", str(cache_dir)]) == 0
    assert "no sha256 was recorded (placed by hand?); recorded it now" in capsys.readouterr().out
    assert main(["weights", "verify", HEAD, "--cache-dir", str(cache_dir)]) == 0
    assert "matches the sha256 recorded at its download" in capsys.readouterr().out
    (cache_dir / "dinov2_vits14_pretrain.pth").write_text("<!doctype html><title>404 Not Found</title>")
    (cache_dir / "dinov2_vitb14_pretrain.pth").write_bytes(b"")
    (cache_dir / "dinov2_vitl14_pretrain.pth").mkdir()
    (cache_dir / "dinov2_vitg14_pretrain.pth").write_bytes(CONTENT[: len(CONTENT) // 2])
    assert main(["weights", "verify", "--cache-dir", str(cache_dir)]) == 1
    for expected in (
        "dinov2_vits14_pretrain.pth is an HTML page (titled '404 Not Found'), not a checkpoint: the download failed",
        "dinov2_vitb14_pretrain.pth is empty (0 bytes), not a checkpoint",
        "dinov2_vitl14_pretrain.pth is a folder, not a checkpoint file",
        "dinov2_vitg14_pretrain.pth is a truncated zip archive",
    ):
        assert expected in caplog.text
    assert f"ok  {HEAD}.pth" in capsys.readouterr().out


def test_help_says_hashes_are_recorded_on_first_use(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["weights", "verify", "--help"])
    assert "Meta publishes no sha256 for its files" in capsys.readouterr().out


def test_fetch_dinotxt_gets_its_three_files(http_server, cache_dir: Path, capsys) -> None:
    import gzip

    vocabulary = gzip.compress(b"#version: 0.2\na b\n")
    prefix = "/dinov2_vitl14/dinov2_vitl14_reg4_dinotxt_tet1280d20h24l"
    http_server.files.update(
        {f"{prefix}_vision_head.pth": CONTENT, f"{prefix}_text_encoder.pth": CONTENT,
         "/thirdparty/bpe_simple_vocab_16e6.txt.gz": vocabulary}
    )  # fmt: skip
    assert main(["weights", "fetch", "dinotxt", "--cache-dir", str(cache_dir), "--mirror", http_server.url]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == [
        "dinov2_vitl14_reg4_dinotxt_tet1280d20h24l_vision_head",
        "dinov2_vitl14_reg4_dinotxt_tet1280d20h24l_text_encoder",
        "bpe_simple_vocab_16e6.txt.gz",
    ]
    assert (cache_dir / "bpe_simple_vocab_16e6.txt.gz").read_bytes() == vocabulary
    assert main(["weights", "verify", "dinotxt", "--cache-dir", str(cache_dir)]) == 0
