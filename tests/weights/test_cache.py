"""Weights manager against a real HTTP server on 127.0.0.1: download, resume, verification, errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from dinov2_ros.weights.cache import (
    REGISTRY,
    Verification,
    WeightsError,
    fetch,
    get_weight_file,
    resolve_cache_dir,
    verify_file,
    weight_files,
)
from dinov2_ros.weights.digests import cached_sha256, sha256_of
from dinov2_ros.weights.download import ProgressBar
from dinov2_ros.weights.variants import DINOTXT, VARIANTS, WeightFile


def checkpoint_bytes(numel: int = 262_000) -> bytes:
    """A real torch.save file (zip format, as Meta ships): ~1 MB, a little more than one download chunk."""
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(numel, dtype=torch.float32)}, buffer)
    return buffer.getvalue()


CONTENT = checkpoint_bytes()


def served_file(server, content: bytes = CONTENT, *, size: int | None = None, sha256: str | None = None):
    server.files["/weights/blob.pth"] = content
    return WeightFile(
        "blob.pth",
        f"{server.url}/weights/blob.pth",
        len(content) if size is None else size,
        hashlib.sha256(content).hexdigest() if sha256 is None else sha256,
    )


def test_download_is_verified_and_renamed_into_place(http_server, cache_dir: Path, capsys) -> None:
    path = fetch(served_file(http_server), cache_dir)
    assert path == cache_dir / "blob.pth"
    assert path.read_bytes() == CONTENT
    assert not (cache_dir / "blob.pth.part").exists()
    assert "blob.pth: 1.0 / 1.0 MB (100%)" in capsys.readouterr().err
    digest = hashlib.sha256(CONTENT).hexdigest()
    assert (cache_dir / "blob.pth.sha256").read_text() == f"{digest}  blob.pth\n"  # sha256sum format


def test_partial_download_resumes_with_a_range_request(http_server, cache_dir: Path) -> None:
    cache_dir.mkdir()
    (cache_dir / "blob.pth.part").write_bytes(CONTENT[:1000])
    path = fetch(served_file(http_server), cache_dir, progress=False)
    assert http_server.range_headers == ["bytes=1000-"]
    assert path.read_bytes() == CONTENT


def test_server_without_range_support_restarts_the_download(http_server, cache_dir: Path) -> None:
    http_server.honour_range = False
    cache_dir.mkdir()
    (cache_dir / "blob.pth.part").write_bytes(b"x" * 1000)
    assert fetch(served_file(http_server), cache_dir, progress=False).read_bytes() == CONTENT


def test_dropped_connection_keeps_the_part_and_the_next_fetch_resumes(http_server, cache_dir: Path) -> None:
    file = served_file(http_server)
    http_server.cut_after = 300_000
    with pytest.raises(WeightsError, match=r"could not download blob\.pth from .*place the file at"):
        fetch(file, cache_dir, progress=False)
    assert (cache_dir / "blob.pth.part").stat().st_size == 300_000
    http_server.cut_after = None
    assert fetch(file, cache_dir, progress=False).read_bytes() == CONTENT
    assert http_server.range_headers[-1] == "bytes=300000-"


def test_corrupt_download_is_deleted(http_server, cache_dir: Path) -> None:
    file = served_file(http_server, sha256="0" * 64)
    with pytest.raises(WeightsError, match=r"blob\.pth\.part is corrupt: sha256 [0-9a-f]{64}, expected 0{64}"):
        fetch(file, cache_dir, progress=False)
    assert not (cache_dir / "blob.pth").exists() and not (cache_dir / "blob.pth.part").exists()


def test_truncated_download_is_refused(http_server, cache_dir: Path) -> None:
    file = served_file(http_server, size=len(CONTENT) + 10)
    with pytest.raises(WeightsError, match=f"is truncated: {len(CONTENT)} bytes, expected {len(CONTENT) + 10}"):
        fetch(file, cache_dir, progress=False)


def test_damaged_cached_file_is_reported_not_used(http_server, cache_dir: Path) -> None:
    file = served_file(http_server)
    cache_dir.mkdir()
    (cache_dir / "blob.pth").write_bytes(CONTENT[:-1] + b"!")  # the zip's end record survives
    with pytest.raises(WeightsError, match=r"blob\.pth is corrupt: .*delete it and fetch it again"):
        fetch(file, cache_dir)
    assert http_server.range_headers == []


def test_cached_file_needs_no_network(cache_dir: Path) -> None:
    cache_dir.mkdir()
    (cache_dir / "blob.pth").write_bytes(CONTENT)
    file = WeightFile("blob.pth", "http://127.0.0.1:9/blob.pth", len(CONTENT), hashlib.sha256(CONTENT).hexdigest())
    assert fetch(file, cache_dir) == cache_dir / "blob.pth"


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_error_says_where_to_place_the_file(cache_dir: Path) -> None:
    url = f"http://127.0.0.1:{unused_port()}/dinov2_vits14_pretrain.pth"
    file = WeightFile("dinov2_vits14_pretrain.pth", url)
    expected = f"could not download dinov2_vits14_pretrain.pth from {url} (.*); place the file at {cache_dir}/dinov2_vits14_pretrain.pth"
    with pytest.raises(WeightsError, match=expected):
        fetch(file, cache_dir, progress=False)


def test_missing_file_on_the_server_is_an_error(http_server, cache_dir: Path) -> None:
    file = WeightFile("absent.pth", f"{http_server.url}/absent.pth")
    with pytest.raises(WeightsError, match=r"could not download absent\.pth .*\(Not Found\)"):
        fetch(file, cache_dir, progress=False)


def test_mirror_replaces_the_official_host(http_server, cache_dir: Path) -> None:
    http_server.files["/dinov2_vits14/dinov2_vits14_nyu_linear_head.pth"] = CONTENT
    path = fetch("dinov2_vits14_nyu_linear_head", cache_dir, mirror=http_server.url + "/", progress=False)
    assert path == cache_dir / "dinov2_vits14_nyu_linear_head.pth" and path.read_bytes() == CONTENT


def test_cache_directory_precedence(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DINOV2_ROS_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_cache_dir() == tmp_path / "home" / ".cache" / "dinov2_ros"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir() == tmp_path / "xdg" / "dinov2_ros"
    monkeypatch.setenv("DINOV2_ROS_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_env_cache_is_where_fetch_looks(monkeypatch, http_server, tmp_path: Path) -> None:
    monkeypatch.setenv("DINOV2_ROS_CACHE", str(tmp_path / "env"))
    assert fetch(served_file(http_server), progress=False) == tmp_path / "env" / "blob.pth"


def test_registry_holds_every_released_file() -> None:
    assert len(REGISTRY) == 8 + 4 * 2 * 2 + 3  # backbones, nyu/kitti x linear/linear4 heads for S/B/L/g, dino.txt
    for name, file in REGISTRY.items():
        if file in DINOTXT.files:
            continue
        assert file.url == f"https://dl.fbaipublicfiles.com/dinov2/{name.split('_')[0]}_{name.split('_')[1]}/{name}.pth"
    assert REGISTRY["dinov2_vitg14_reg4_pretrain"] == VARIANTS["vitg14_reg4"].checkpoint
    assert get_weight_file("vitl14") == REGISTRY["dinov2_vitl14_pretrain"]
    # dino.txt's files where Meta's hub code (dinov2/hub/dinotxt.py) downloads them
    base = "https://dl.fbaipublicfiles.com/dinov2"
    assert [file.url for file in weight_files("dinotxt")] == [
        f"{base}/dinov2_vitl14/dinov2_vitl14_reg4_dinotxt_tet1280d20h24l_vision_head.pth",
        f"{base}/dinov2_vitl14/dinov2_vitl14_reg4_dinotxt_tet1280d20h24l_text_encoder.pth",
        f"{base}/thirdparty/bpe_simple_vocab_16e6.txt.gz",
    ]
    assert weight_files("vits14") == (get_weight_file("vits14"),)
    with pytest.raises(ValueError, match="unknown weight file 'vitx'; run `dinov2-ros weights list`"):
        get_weight_file("vitx")


def test_progress_bar_without_known_total() -> None:
    stream = io.StringIO()
    ProgressBar("blob", stream, interval=0.0)(2_500_000, None)
    assert stream.getvalue() == "\rblob: 2.5 MB"


def test_concurrent_fetches_download_once(http_server, cache_dir: Path) -> None:
    """Nodes started together share one download: the lock makes the second reuse the first's file."""
    file = served_file(http_server)
    with ThreadPoolExecutor(max_workers=3) as pool:
        paths = list(pool.map(lambda _: fetch(file, cache_dir, progress=False), range(3)))
    assert paths == [cache_dir / "blob.pth"] * 3
    assert paths[0].read_bytes() == CONTENT
    assert len(http_server.range_headers) == 1


def test_unusable_cache_directory_is_explained(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    with pytest.raises(WeightsError, match=r"cannot create the weights cache .*set \$DINOV2_ROS_CACHE"):
        fetch(WeightFile("blob.pth", "http://127.0.0.1:9/blob.pth"), blocker / "cache")


def test_the_sha256_recorded_at_download_catches_a_later_change(http_server, cache_dir: Path) -> None:
    file = WeightFile("blob.pth", served_file(http_server).url)  # no pins, like every released file
    path = fetch(file, cache_dir, progress=False)
    assert verify_file(path, file).reference == "recorded"
    other = checkpoint_bytes(261_999)  # still a checkpoint, other bytes
    path.write_bytes(other)
    with pytest.raises(WeightsError, match=r"blob\.pth changed since its sha256 was recorded at download: sha256 "):
        fetch(file, cache_dir, progress=False)
    assert http_server.range_headers == [None]  # refused, not silently downloaded again


def test_a_file_placed_by_hand_is_recorded_at_its_first_check(cache_dir: Path, caplog) -> None:
    cache_dir.mkdir()
    (cache_dir / "blob.pth").write_bytes(CONTENT)
    file = WeightFile("blob.pth", "http://127.0.0.1:9/blob.pth")
    assert fetch(file, cache_dir) == cache_dir / "blob.pth"
    assert "has no recorded sha256 (placed by hand?); recorded" in caplog.text
    assert verify_file(cache_dir / "blob.pth", file) == Verification(hashlib.sha256(CONTENT).hexdigest(), "recorded")


def test_an_html_error_page_served_as_the_file_is_refused_and_deleted(http_server, cache_dir: Path) -> None:
    http_server.files["/weights/blob.pth"] = b"<html><head><title>Access Denied</title></head></html>"
    file = WeightFile("blob.pth", f"{http_server.url}/weights/blob.pth")
    with pytest.raises(
        WeightsError, match=r"is an HTML page \(titled 'Access Denied'\), not a checkpoint: the download"
    ):
        fetch(file, cache_dir, progress=False)
    assert [path.name for path in cache_dir.iterdir()] == [], "no file, part, record or lock file left"


def test_digest_index_rehashes_a_file_only_when_its_version_changes(tmp_path: Path) -> None:
    path, index = tmp_path / "w.pth", tmp_path / "cache" / "sha256-index.json"
    path.write_bytes(CONTENT)
    first = cached_sha256(path, index)
    assert first == sha256_of(path) and index.is_file()
    stat = path.stat()
    path.write_bytes(CONTENT[:-1] + b"!")  # same size; restore the mtime: the index cannot tell
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cached_sha256(path, index) == first != sha256_of(path)  # why `weights verify` re-hashes in full
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert cached_sha256(path, index) == sha256_of(path)


def test_a_cache_where_no_record_can_be_written_still_serves_its_files(cache_dir: Path, caplog) -> None:
    """A read-only cache (a shared mount) cannot take a record; the file is still served, and said so.
    Tests run as root here, so the record is blocked by a folder in its place: the same OSError."""
    cache_dir.mkdir()
    (cache_dir / "blob.pth").write_bytes(CONTENT)
    (cache_dir / "blob.pth.sha256").mkdir()
    file = WeightFile("blob.pth", "http://127.0.0.1:9/blob.pth")
    assert fetch(file, cache_dir) == cache_dir / "blob.pth"
    assert "cannot record the sha256 of" in caplog.text
    assert verify_file(cache_dir / "blob.pth", file).reference == "not recorded"


def vocabulary_bytes(merges: int = 3) -> bytes:
    return gzip.compress(("#version: 0.2\n" + "".join(f"a{i} b{i}\n" for i in range(merges))).encode())


def test_vocabulary_downloads_are_checked_as_vocabularies(http_server, cache_dir: Path) -> None:
    """dino.txt's BPE vocabulary is no checkpoint: it is fetched, recognised and recorded as a gzip of merges."""
    vocabulary = DINOTXT.vocabulary
    http_server.files["/thirdparty/bpe_simple_vocab_16e6.txt.gz"] = vocabulary_bytes()
    path = fetch(vocabulary, cache_dir, mirror=http_server.url, progress=False)
    assert path.read_bytes() == vocabulary_bytes()
    assert verify_file(path, vocabulary).reference == "recorded"
    for damaged, named in [
        (b"<!DOCTYPE html><title>Forbidden</title>", "HTML page"),
        (vocabulary_bytes()[:20], "damaged or truncated gzip"),
        (gzip.compress(b"no header\n"), "holds no BPE merges"),
        (b"a b\nc d\n", "not gzip-compressed"),
    ]:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)
        http_server.files["/thirdparty/bpe_simple_vocab_16e6.txt.gz"] = damaged
        with pytest.raises(WeightsError, match=named):
            fetch(vocabulary, cache_dir, mirror=http_server.url, progress=False)
        assert not path.exists()
