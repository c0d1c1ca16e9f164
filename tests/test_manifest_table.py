"""Manifests read without pandas (what `g2l tile` uses) read, validate and hash exactly as with pandas."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pandas as pd
import pytest

from g2l.manifest import ManifestError, content_hash, load, parse_table
from g2l.manifest.canonical import canonical_columns, canonical_value
from g2l.manifest.io import canonical_csv_bytes
from g2l.manifest.table import ManifestTable, load_table, parse_manifest_table, parse_plain_csv

# Cells a plain CSV may hold: pandas (dtype=str, keep_default_na=False, na_values=[]) keeps all of them as
# the same strings: blanks, NA-looking words, numbers with trailing zeros, spaces, unicode.
PLAIN_CELLS = ("", "x", "NA", "nan", "None", "0.50", "1e-3", " padded ", "gs://b/o.svs", "é", "-", "TCGA-A1")


def _pandas_records(data: bytes, name: str = "m.csv") -> tuple[tuple[str, ...], list[dict[str, object]]]:
    df = parse_table(data, name)
    return tuple(str(c) for c in df.columns), df.to_dict("records")


def _random_plain_csv(rng: random.Random) -> bytes:
    n_cols = rng.randint(1, 6)
    header = rng.sample(["slide_id", "uri", "site", "mpp", "cancer_type", "label", "a b", "Z"], n_cols)
    lines = [",".join(header)]
    for _ in range(rng.randint(0, 6)):
        lines.append(",".join(rng.choice(PLAIN_CELLS) for _ in header))
        if rng.random() < 0.2:
            lines.append("")  # a blank line, which pandas skips
    newline = rng.choice(["\n", "\r\n"])
    return (newline.join(lines) + rng.choice(["", newline])).encode()


def test_plain_csvs_parse_exactly_as_pandas_parses_them() -> None:
    rng = random.Random(15)
    taken = 0
    for _ in range(300):
        data = _random_plain_csv(rng)
        table = parse_plain_csv(data)
        if table is None:  # a header with a blank name cannot be generated here: every one is taken
            pytest.fail(f"plain CSV refused: {data!r}")
        columns, records = _pandas_records(data)
        assert table.columns == columns, data
        assert list(table.records) == records, data
        taken += 1
    assert taken == 300


@pytest.mark.parametrize(
    "data",
    [
        b'slide_id,uri\n"a,1",x\n',  # quoting
        b"\xef\xbb\xbfslide_id,uri\na,x\n",  # a byte-order mark
        b"slide_id,uri\na,x,extra\n",  # a long row (pandas shifts it into an index)
        b"slide_id,uri\na\n",  # a short row (pandas pads it with NaN)
        b"slide_id,slide_id\na,b\n",  # a repeated name (pandas renames it slide_id.1)
        b"slide_id,,uri\na,b,c\n",  # a blank name (pandas calls it "Unnamed: 1")
        b"slide_id,uri\n   \na,x\n",  # a line of spaces
        b"slide_id,uri\ra,x\r",  # old Mac line ends
        b"slide_id,uri\n\xff\xfe,x\n",  # not UTF-8
        b"",  # empty
    ],
)
def test_csvs_that_need_pandas_are_left_to_it(data: bytes) -> None:
    assert parse_plain_csv(data) is None
    try:
        expected = _pandas_records(data)
    except ManifestError:
        with pytest.raises(ManifestError):
            parse_manifest_table(data, "m.csv")
        return
    table = parse_manifest_table(data, "m.csv")
    assert (table.columns, list(table.records)) == expected


def _manifest_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "slide_id": ["s1", "s2", "s3"],
            "uri": ["gs://b/s1.svs", "/data/s 2.svs", "gs://b/s3.svs"],
            "cancer_type": ["BRCA"] * 3,
            "site": ["A1", "B2", "A1"],
            "mpp": ["0.25", "", "0.50"],
            "zlabel": ['he said "hi"', "a,b", "line\nbreak"],  # quoting in the canonical form
            "alabel": ["1", "2", "3"],
        }
    )


def test_canonical_csv_is_the_bytes_pandas_wrote() -> None:
    """The content hash is defined on pandas' to_csv of the canonical cells; the csv module writes them."""
    df = _manifest_frame()
    cols = canonical_columns(list(df.columns))
    cells = pd.DataFrame(
        {c: [canonical_value(v, numeric=c == "mpp") for v in df[c]] for c in cols}, columns=cols
    )
    assert canonical_csv_bytes(df) == cells.to_csv(index=False, lineterminator="\n").encode()
    assert cols[:5] == ["slide_id", "uri", "cancer_type", "site", "mpp"] and cols[5:] == ["alabel", "zlabel"]


@pytest.mark.parametrize("kind", ["plain.csv", "quoted.csv", "typed.parquet"])
def test_a_table_manifest_has_the_content_hash_of_the_loaded_one(tmp_path: Path, kind: str) -> None:
    df = _manifest_frame()
    if kind == "plain.csv":
        df = df.drop(columns=["zlabel"])
    path = tmp_path / kind
    if kind.endswith(".parquet"):
        typed = df.assign(mpp=[0.25, None, 0.5])
        typed.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    table = load_table(path)
    loaded = load(path)
    assert table.content_hash == loaded.content_hash
    assert (parse_plain_csv(path.read_bytes()) is not None) == (kind == "plain.csv")
    assert ManifestTable.from_frame(loaded.df).columns == table.table.columns


def test_a_table_manifest_reports_the_same_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("slide_id,uri,cancer_type,site,mpp\ns.1,gs://b,BRCA,,-2\ns2,x.svs,BRCA,A1,\ns2,y.svs,BRCA,A1,\n")
    with pytest.raises(ManifestError) as from_table:
        load_table(path)
    with pytest.raises(ManifestError) as from_pandas:
        load(path)
    assert [str(e) for e in from_table.value.errors] == [str(e) for e in from_pandas.value.errors]
    assert len(from_table.value.errors) == 5  # bad id, bad uri, blank site, negative mpp, duplicate id


def test_content_hash_of_a_frame_matches_its_table() -> None:
    df = parse_table(io.BytesIO(_manifest_frame().to_csv(index=False).encode()).getvalue(), "m.csv")
    assert ManifestTable.from_frame(df).content_hash() == content_hash(df)


def test_every_public_name_of_the_package_resolves() -> None:
    import g2l.manifest

    missing = [name for name in g2l.manifest.__all__ if getattr(g2l.manifest, name, None) is None]
    assert missing == []
