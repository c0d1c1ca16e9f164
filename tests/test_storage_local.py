"""Local paths behave like gs:// URIs behind the same API: list, stat, stage, atomic put, sync."""

from __future__ import annotations

import base64
import os

import google_crc32c
import pytest

from g2l import storage as st


def _crc(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def test_uri_helpers():
    assert st.is_remote("gs://b/x") and not st.is_remote("/data/x") and not st.is_remote("file:///x")
    assert st.join("gs://b/p/", "tiles", "/s1/", "meta.json") == "gs://b/p/tiles/s1/meta.json"
    assert st.join("/data/run", "tiles", "s1") == "/data/run/tiles/s1"
    assert st.split_gs("gs://bucket/a/b.svs") == ("bucket", "a/b.svs")
    with pytest.raises(ValueError, match="no bucket"):
        st.split_gs("gs:///x")
    assert isinstance(st.backend_for("gs://b/x"), st.GCSStorage)
    assert isinstance(st.backend_for("/x"), st.LocalStorage)
    assert isinstance(st.backend_for("/x"), st.Storage)


def test_local_list_and_stat_compute_crc32c(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.SVS").write_bytes(b"1" * 10)
    (tmp_path / "two.ndpi").write_bytes(b"22")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.svs").write_bytes(b"h")
    files = st.list_files(tmp_path, suffixes=("svs", "ndpi"))
    assert [os.path.basename(f.uri) for f in files] == ["one.SVS", "two.ndpi"]
    assert files[0].crc32c == _crc(b"1" * 10) and files[0].size == 10 and files[0].generation
    assert st.list_files(tmp_path, checksum=False)[0].crc32c is None
    with pytest.raises(FileNotFoundError, match="missing"):
        st.stat(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        st.list_files(tmp_path / "two.ndpi")


def test_local_stage_returns_the_path_and_checks_a_given_checksum(tmp_path):
    path = tmp_path / "s.svs"
    path.write_bytes(b"slide")
    assert st.stage(path) == path
    assert st.stage(str(path), expected_checksum=f"crc32c:{_crc(b'slide')}") == path
    with pytest.raises(st.ChecksumMismatchError, match=str(path)):
        st.stage(path, expected_checksum=f"crc32c:{_crc(b'other')}")


def test_local_put_is_atomic_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "deep" / "dir" / "out.json"
    st.put_text(target, "old")
    assert target.read_text() == "old"

    class Boom(Exception):
        pass

    def failing_write(fh):
        fh.write(b"partial new cont")
        raise Boom

    with pytest.raises(Boom):
        st.LocalStorage()._atomic_write(str(target), failing_write)
    assert target.read_text() == "old"
    with pytest.raises(FileNotFoundError):
        st.put_file(tmp_path / "nope", target)
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]

    src = tmp_path / "src.bin"
    src.write_bytes(b"new")
    st.put_file(src, target)
    assert st.read_bytes(target) == b"new"


def test_local_sync_dir_is_idempotent(tmp_path):
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    (src / "x" / "a.txt").write_text("a")
    (src / "b.txt").write_text("b")
    dest = tmp_path / "dest"
    assert st.sync_dir(src, dest) == 2
    assert (dest / "x" / "a.txt").read_text() == "a"
    assert st.sync_dir(src, dest) == 0


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("G2L_CACHE_DIR", str(tmp_path / "cache"))
    assert st.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("G2L_CACHE_DIR")
    assert st.default_cache_dir().parts[-3:] == (".cache", "g2l", "staging")


def test_parse_checksum_forms():
    assert st.parse_checksum("crc32c:bIkWNQ==") == ("crc32c", "bIkWNQ==")
    assert st.parse_checksum("MD5:" + "A" * 32) == ("md5", "a" * 32)
    for bad in ("bIkWNQ==", "crc32c:notb64!", "crc32c:AAAAAAAA", "md5:123", "sha256:" + "0" * 64):
        with pytest.raises(ValueError):
            st.parse_checksum(bad)
