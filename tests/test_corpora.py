from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import pytest

from pipelines.corpora import (
    CorpusConfig,
    CorpusFormatError,
    RowProblem,
    infer_split,
    read_corpus,
    read_phoenix2014_csv,
    read_phoenix2014t_csv,
    read_slrt_pickle,
)

HEADER_T = "name|video|start|end|speaker|orth|translation"


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.real_data
@pytest.mark.parametrize(
    "reader, relpath, kwargs, count",
    [
        (read_phoenix2014t_csv, "phoenix-2014t/PHOENIX-2014-T.train.corpus.csv", {}, 7096),
        (read_phoenix2014t_csv, "phoenix-2014t/PHOENIX-2014-T.dev.corpus.csv", {}, 519),
        (read_phoenix2014_csv, "phoenix-2014/train.corpus.csv", {}, 5672),
        (read_phoenix2014_csv, "phoenix-2014/dev.corpus.csv", {}, 540),
        (read_slrt_pickle, "slrt/phoenix-2014t.train", {"language": "dgs"}, 7096),
        (read_slrt_pickle, "slrt/phoenix-2014t.dev", {"language": "dgs"}, 519),
        (read_slrt_pickle, "slrt/phoenix-2014.train", {"language": "dgs"}, 5672),
        (read_slrt_pickle, "slrt/phoenix-2014.dev", {"language": "dgs"}, 540),
        (read_slrt_pickle, "slrt/csl-daily.train", {"language": "csl"}, 18401),
        (read_slrt_pickle, "slrt/csl-daily.dev", {"language": "csl"}, 1077),
    ],
)
def test_real_corpus_counts(real_data_dir, reader, relpath, kwargs, count):
    samples = reader(real_data_dir / relpath, **kwargs)
    assert len(samples) == count
    assert all(s.glosses for s in samples)
    assert len({s.name for s in samples}) == count
    assert {s.split for s in samples} == {infer_split(relpath)}


@pytest.mark.real_data
def test_real_phoenix2014t_csv_and_pickle_agree(real_data_dir):
    csv_samples = {s.name: s for s in read_phoenix2014t_csv(real_data_dir / "phoenix-2014t/PHOENIX-2014-T.dev.corpus.csv")}
    pkl_samples = read_slrt_pickle(real_data_dir / "slrt/phoenix-2014t.dev", language="dgs")
    first = pkl_samples[0]
    assert first.name == "11August_2010_Wednesday_tagesschau-2"
    assert first.glosses == ("DRUCK", "TIEF", "KOMMEN")
    assert first.num_frames == 42 and first.signer == "Signer08"
    assert first.text == "tiefer luftdruck bestimmt in den nächsten tagen unser wetter ."
    for s in pkl_samples:
        c = csv_samples[s.name]
        assert (c.glosses, c.text, c.signer) == (s.glosses, s.text, s.signer)
    assert csv_samples[first.name].video == "11August_2010_Wednesday_tagesschau-2/1/*.png"
    assert csv_samples[first.name].num_frames is None  # start/end are -1 in the official file


@pytest.mark.real_data
def test_real_phoenix2014_pickle_names_match_csv(real_data_dir):
    csv_names = [s.name for s in read_phoenix2014_csv(real_data_dir / "phoenix-2014/dev.corpus.csv")]
    pkl = read_slrt_pickle(real_data_dir / "slrt/phoenix-2014.dev", language="dgs")
    assert sorted(csv_names) == sorted(s.name for s in pkl)
    assert pkl[0].text is None and pkl[0].num_frames == 215
    assert pkl[0].video == "01April_2010_Thursday_heute_default-1/1/*.png"
    # the official annotation has a double space; tokens never include empty strings
    assert "" not in pkl[0].glosses and pkl[0].glosses[:2] == ("ICH", "OSTERN")


@pytest.mark.real_data
def test_real_csl_daily(real_data_dir):
    dev = read_slrt_pickle(real_data_dir / "slrt/csl-daily.dev", language="csl")
    s = dev[0]
    assert (s.name, s.signer, s.glosses, s.text, s.num_frames) == ("S000020_P0000_T00", "0", ("他", "今天", "年龄", "4"), "他今年四岁。", 54)


def test_phoenix2014t_csv_fields_and_frames(tmp_path):
    path = write(tmp_path / "x.dev.corpus.csv", f"{HEADER_T}\na|a.mp4|0|9|S1|A B  C|ein text .\nb|b/1/*.png|-1|-1|S2|D|zwei .\n")
    a, b = read_phoenix2014t_csv(path, language="sgsl")
    assert (a.name, a.split, a.signer, a.glosses, a.text, a.num_frames, a.video, a.language) == (
        "a", "dev", "S1", ("A", "B", "C"), "ein text .", 10, "a.mp4", "sgsl")
    assert b.num_frames is None and b.video == "b/1/*.png"


@pytest.mark.parametrize(
    "body, message",
    [
        ("a|v|0|9|S1|A B|t .\nb|v|0|9|S1|A|t\n|extra", "x.train.corpus.csv:4: expected 7 '|'-separated fields, got 2"),
        ("a|v|0|9|S1||t .\n", "x.train.corpus.csv:2: sample 'a': empty gloss sequence"),
        ("a|v|0|9|S1|A|t .\nb|v|x|9|S1|A|t .\n", "x.train.corpus.csv:3: sample 'b': start/end must be integers"),
        ("a|v|0|9|S1|A|\n", "x.train.corpus.csv:2: sample 'a': empty translation"),
        ("a|v|0|9|S1|A|t\na|v|0|9|S1|B|u\n", "duplicate sample name 'a'"),
    ],
)
def test_phoenix2014t_csv_bad_rows(tmp_path, body, message):
    path = write(tmp_path / "x.train.corpus.csv", f"{HEADER_T}\n{body}")
    with pytest.raises(CorpusFormatError, match=message.replace("|", r"\|")):
        read_phoenix2014t_csv(path)


def test_bad_rows_can_be_skipped_and_are_reported(tmp_path):
    path = write(tmp_path / "x.train.corpus.csv", f"{HEADER_T}\na|v|0|9|S1|A|t\nb|v|0|9|S1||u\nc|v|0|9\nd|v|0|1|S1|D|w\n")
    skipped: list[RowProblem] = []
    samples = read_phoenix2014t_csv(path, skipped=skipped)
    assert [s.name for s in samples] == ["a", "d"]
    assert [(p.line, p.message) for p in skipped] == [(3, "sample 'b': empty gloss sequence"), (4, "expected 7 '|'-separated fields, got 4")]
    assert str(skipped[0]).startswith(f"{path}:3:")


def test_missing_column_names_file_and_columns(tmp_path):
    path = write(tmp_path / "x.dev.corpus.csv", "name|video|start|end|speaker|orth\na|v|0|1|S|A\n")
    with pytest.raises(CorpusFormatError, match=r"x.dev.corpus.csv:1: missing column\(s\) \['translation'\]"):
        read_phoenix2014t_csv(path)


def test_non_utf8_names_line(tmp_path):
    path = write(tmp_path / "x.dev.corpus.csv", f"{HEADER_T}\na|v|0|1|S|A|gut\n".encode() + "b|v|0|1|S|B|grüße\n".encode("latin-1"))
    with pytest.raises(CorpusFormatError, match=r"x.dev.corpus.csv:3: not valid UTF-8"):
        read_phoenix2014t_csv(path)


def test_missing_file_and_split_inference(tmp_path):
    with pytest.raises(CorpusFormatError, match="file not found"):
        read_phoenix2014t_csv(tmp_path / "nope.dev.corpus.csv")
    with pytest.raises(CorpusFormatError, match="cannot infer the split"):
        read_phoenix2014t_csv(write(tmp_path / "corpus.csv", f"{HEADER_T}\n"))
    assert infer_split("PHOENIX-2014-T.train.corpus.csv") == "train"
    assert infer_split("csl-daily.dev") == "dev"


def test_phoenix2014_csv(tmp_path):
    path = write(tmp_path / "test.corpus.csv", "id|folder|signer|annotation\nv1|v1/1/*.png|Signer04|ICH  OSTERN __ON__\n")
    (s,) = read_phoenix2014_csv(path)
    assert (s.name, s.split, s.signer, s.glosses, s.text, s.video) == ("v1", "test", "Signer04", ("ICH", "OSTERN", "__ON__"), None, "v1/1/*.png")


def _pickle(path: Path, entries) -> Path:
    with gzip.open(path, "wb") as f:
        pickle.dump(entries, f)
    return path


def test_slrt_pickle_bad_entries(tmp_path):
    good = {"name": "train/a", "signer": "S1", "gloss": "A B", "text": "t", "num_frames": 5}
    path = _pickle(tmp_path / "p.train", [good, {"name": "b", "gloss": "", "num_frames": 3}])
    with pytest.raises(CorpusFormatError, match=r"p.train:1: entry 'b': empty gloss sequence"):
        read_slrt_pickle(path, language="dgs")
    path = _pickle(tmp_path / "q.train", [good, {"name": "c", "gloss": "A"}])
    with pytest.raises(CorpusFormatError, match=r"q.train:1: entry 'c': missing key\(s\) \['num_frames'\]"):
        read_slrt_pickle(path, language="dgs")
    (s,) = read_slrt_pickle(_pickle(tmp_path / "r.train", [good]), language="dgs")
    assert (s.name, s.video, s.num_frames) == ("a", "train/a", 5)


def test_slrt_pickle_refuses_foreign_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = _pickle(tmp_path / "e.train", [Evil()])
    with pytest.raises(CorpusFormatError, match="refusing to load global builtins.print"):
        read_slrt_pickle(path, language="dgs")
    with pytest.raises(CorpusFormatError, match="not a gzip-pickle"):
        read_slrt_pickle(write(tmp_path / "f.train", b"plain text"), language="dgs")


def test_corpus_config_dispatch(tmp_path):
    lang = tmp_path / "sgsl-a"
    lang.mkdir()
    write(lang / "sgsl-a.dev.corpus.csv", f"{HEADER_T}\na|videos/a.mp4|0|3|S1|X|x\n")
    cfg = CorpusConfig(name="synthetic", format="synthetic", language="sgsl-a", root=str(tmp_path))
    (s,) = read_corpus(cfg, "dev")
    assert s.language == "sgsl-a" and cfg.video_dir("dev") == lang
    cfg2 = CorpusConfig(name="phoenix2014t", format="phoenix2014t_csv", language="dgs",
                        files={"dev": str(lang / "sgsl-a.dev.corpus.csv")}, video_root="/v/{split}")
    assert read_corpus(cfg2, "dev")[0].name == "a" and cfg2.video_dir("dev") == Path("/v/dev")
    with pytest.raises(CorpusFormatError, match="no annotation file for split 'test'"):
        read_corpus(cfg2, "test")
