"""gs:// storage round trips through the real gcp-storage-emulator."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from typing import IO

import google_crc32c
import pytest

from g2l import storage as st


def _crc(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def test_list_files_reports_bucket_checksums_and_filters_suffixes(gcs_bucket):
    blobs = {"slides/a/TCGA-A1-A0SB-01Z-00-DX1.svs": os.urandom(3000),
             "slides/b/x.TIFF": os.urandom(1000),
             "slides/readme.txt": b"not a slide",
             "other/y.svs": b"outside the prefix"}
    for name, data in blobs.items():
        st.put_bytes(f"gs://{gcs_bucket}/{name}", data)

    files = st.list_files(f"gs://{gcs_bucket}/slides", suffixes=["svs", ".tiff"])

    assert [f.uri for f in files] == [f"gs://{gcs_bucket}/slides/a/TCGA-A1-A0SB-01Z-00-DX1.svs",
                                      f"gs://{gcs_bucket}/slides/b/x.TIFF"]
    for f in files:
        data = blobs[f.uri.split("/", 3)[3]]
        assert f.size == len(data)
        assert f.crc32c == _crc(data)
        assert f.md5 == hashlib.md5(data).hexdigest()
        assert f.checksum == f"crc32c:{_crc(data)}"
        assert f.generation and f.generation > 0
    assert len(st.list_files(f"gs://{gcs_bucket}/slides")) == 3


def test_stat_exists_and_missing_object(gcs_bucket):
    uri = f"gs://{gcs_bucket}/dir/file.bin"
    st.put_bytes(uri, b"12345")
    info = st.stat(uri)
    assert (info.uri, info.size, info.crc32c) == (uri, 5, _crc(b"12345"))
    assert st.exists(uri) and st.exists(f"gs://{gcs_bucket}/dir")
    assert not st.exists(f"gs://{gcs_bucket}/dir/nope") and not st.exists(f"gs://{gcs_bucket}/di")
    with pytest.raises(FileNotFoundError, match=f"gs://{gcs_bucket}/dir/nope"):
        st.stat(f"gs://{gcs_bucket}/dir/nope")
    with pytest.raises(FileNotFoundError, match="nope"):
        st.read_bytes(f"gs://{gcs_bucket}/dir/nope")


def test_stage_downloads_verifies_and_reuses_the_cache(gcs_bucket, tmp_path):
    data = os.urandom(50_000)
    uri = f"gs://{gcs_bucket}/slides/s1.svs"
    st.put_bytes(uri, data)
    gen = st.stat(uri).generation

    first = st.stage_file(uri, cache_dir=tmp_path)
    assert first.downloaded and first.path.read_bytes() == data
    # keyed by (bucket, object, generation), keeping the file's name and extension
    assert first.path == tmp_path / gcs_bucket / "slides" / f"s1.svs@{gen}" / "s1.svs"
    inode = first.path.stat().st_ino

    again = st.stage_file(uri, cache_dir=tmp_path)
    assert not again.downloaded and again.path == first.path and again.path.stat().st_ino == inode
    assert st.stage(uri, cache_dir=tmp_path) == first.path
    # nothing left behind but the file and its lock
    assert sorted(p.name for p in first.path.parent.iterdir()) == [".lock", "s1.svs"]


def test_stage_detects_a_corrupted_cached_file_and_downloads_again(gcs_bucket, tmp_path):
    data = os.urandom(20_000)
    uri = f"gs://{gcs_bucket}/s2.tif"
    st.put_bytes(uri, data)
    path = st.stage(uri, cache_dir=tmp_path)
    with open(path, "r+b") as fh:  # flip one byte, same size: only a checksum can tell
        fh.seek(1234)
        b = fh.read(1)
        fh.seek(1234)
        fh.write(bytes([b[0] ^ 0xFF]))
    assert path.read_bytes() != data

    result = st.stage_file(uri, cache_dir=tmp_path)
    assert result.downloaded and result.path == path and path.read_bytes() == data


def test_a_rewritten_object_gets_a_new_cache_entry(gcs_bucket, tmp_path):
    uri = f"gs://{gcs_bucket}/s3.svs"
    st.put_bytes(uri, b"version one")
    old = st.stage(uri, cache_dir=tmp_path)
    st.put_bytes(uri, b"version two!")
    new = st.stage_file(uri, cache_dir=tmp_path)
    assert new.downloaded and new.path != old
    assert new.path.read_bytes() == b"version two!" and old.read_bytes() == b"version one"


def test_stage_checks_the_manifest_checksum_and_names_the_uri(gcs_bucket, tmp_path):
    data = b"slide bytes" * 100
    uri = f"gs://{gcs_bucket}/s4.svs"
    st.put_bytes(uri, data)
    assert st.stage(uri, tmp_path, expected_checksum=f"crc32c:{_crc(data)}").read_bytes() == data
    assert st.stage(uri, tmp_path, expected_checksum=f"md5:{hashlib.md5(data).hexdigest()}").exists()
    with pytest.raises(st.ChecksumMismatchError, match=f"gs://{gcs_bucket}/s4.svs.*manifest"):
        st.stage(uri, tmp_path / "other", expected_checksum=f"crc32c:{_crc(b'something else')}")
    assert not (tmp_path / "other").exists()  # refused before downloading anything
    with pytest.raises(ValueError, match="crc32c:<base64>"):
        st.stage(uri, tmp_path, expected_checksum="sha1:abc")


class _CorruptingGCS(st.GCSStorage):
    """The real GCS backend whose transfer flips a byte (what a bad network/proxy would do)."""

    def download(self, info: st.FileInfo, dest: IO[bytes]) -> None:
        class Flip:
            def write(self, data: bytes) -> int:
                return dest.write(bytes([data[0] ^ 1]) + data[1:])

        super().download(info, Flip())  # type: ignore[arg-type]


def test_a_corrupted_transfer_is_an_error_naming_the_uri_and_leaves_no_file(gcs_bucket, tmp_path):
    uri = f"gs://{gcs_bucket}/s5.svs"
    st.put_bytes(uri, os.urandom(10_000))
    with pytest.raises(st.ChecksumMismatchError, match=f"{uri}: downloaded 10000 bytes with crc32c"):
        st.stage_file(uri, cache_dir=tmp_path, backend=_CorruptingGCS())
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"]
    assert leftovers == []
    assert st.stage_file(uri, cache_dir=tmp_path).downloaded  # a clean retry works


def test_concurrent_stagers_of_one_object_download_it_once(gcs_bucket, tmp_path):
    data = os.urandom(200_000)
    uri = f"gs://{gcs_bucket}/big.svs"
    st.put_bytes(uri, data)
    results: list[st.StageResult] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(st.stage_file(uri, cache_dir=tmp_path))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.path for r in results}) == 1 and sum(r.downloaded for r in results) == 1
    assert results[0].path.read_bytes() == data


def test_put_and_read_round_trip_and_failed_put_keeps_the_old_object(gcs_bucket, tmp_path):
    uri = f"gs://{gcs_bucket}/out/run/meta.json"
    st.put_text(uri, '{"a": 1}')
    assert st.read_text(uri) == '{"a": 1}'
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(300_000))
    st.put_file(src, f"gs://{gcs_bucket}/out/big.bin")
    assert st.read_bytes(f"gs://{gcs_bucket}/out/big.bin") == src.read_bytes()
    assert st.stat(f"gs://{gcs_bucket}/out/big.bin").crc32c == st.crc32c_of_file(src)

    with pytest.raises(FileNotFoundError):
        st.put_file(tmp_path / "missing.bin", uri)
    assert st.read_text(uri) == '{"a": 1}'


def test_sync_dir_uploads_a_directory_and_skips_unchanged_files(gcs_bucket, tmp_path):
    root = tmp_path / "tiles"
    (root / "s1").mkdir(parents=True)
    (root / "s1" / "coords.parquet").write_bytes(b"p" * 100)
    (root / "s1" / "meta.json").write_text("{}")
    (root / "summary.json").write_text('{"slides_ok": []}')
    dest = f"gs://{gcs_bucket}/run/tiles"

    assert st.sync_dir(root, dest) == 3
    assert st.read_text(f"{dest}/s1/meta.json") == "{}"
    assert sorted(f.uri for f in st.list_files(dest)) == [
        f"{dest}/s1/coords.parquet", f"{dest}/s1/meta.json", f"{dest}/summary.json"]
    assert st.sync_dir(root, dest) == 0
    (root / "s1" / "meta.json").write_text('{"n": 1}')
    assert st.sync_dir(root, dest) == 1
    assert st.read_text(f"{dest}/s1/meta.json") == '{"n": 1}'


def test_client_honours_storage_emulator_host(gcs_emulator):
    client = st.GCSStorage().client()
    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_emulator.host
    assert gcs_emulator.host in client._connection.API_BASE_URL  # talks to the emulator, not Google
