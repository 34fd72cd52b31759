from __future__ import annotations

import pytest

from pipelines.records import Sample
from pipelines.vocabulary import GlossVocabulary


def sample(name: str, glosses: str, split: str = "train") -> Sample:
    return Sample(name, split, "S1", tuple(glosses.split()), None, None, None, "dgs")


def test_specials_ids_and_training_glosses():
    vocab = GlossVocabulary.from_training_samples([sample("a", "REGEN SONNE"), sample("b", "SONNE WIND")])
    assert vocab.itos == ["<blank>", "<pad>", "<unk>", "REGEN", "SONNE", "WIND"]
    assert (vocab.blank_id, vocab.pad_id, vocab.unk_id) == (0, 1, 2)
    assert vocab.encode(["WIND", "REGEN"]) == [5, 3]
    assert vocab.decode([0, 5, 1, 3, 0]) == ["WIND", "REGEN"]


def test_unknown_glosses_map_to_unk_and_are_counted():
    vocab = GlossVocabulary(["A", "B"])
    assert vocab.encode(["A", "NEU", "NEU", "B", "<blank>"]) == [3, 2, 2, 4, 2]
    assert vocab.unknown_counts == {"NEU": 2, "<blank>": 1}


def test_refuses_non_training_samples_and_min_count():
    with pytest.raises(ValueError, match="sample 'd' is from split 'dev'"):
        GlossVocabulary.from_training_samples([sample("a", "A"), sample("d", "B", split="dev")])
    vocab = GlossVocabulary.from_training_samples([sample("a", "A A B")], min_count=2)
    assert vocab.glosses == ["A"]


def test_json_round_trip_and_bad_files(tmp_path):
    vocab = GlossVocabulary(["他", "今天", "__ON__"])
    vocab.save(tmp_path / "v.json")
    loaded = GlossVocabulary.load(tmp_path / "v.json")
    assert loaded.itos == vocab.itos and loaded.stoi == vocab.stoi
    (tmp_path / "bad.json").write_text('{"glosses": ["A"]}')
    with pytest.raises(ValueError, match="bad.json: not a signbridge-gloss-vocabulary"):
        GlossVocabulary.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="duplicate glosses"):
        GlossVocabulary(["A", "A"])


@pytest.mark.real_data
def test_phoenix2014t_vocabulary_size(real_data_dir):
    from pipelines.corpora import read_phoenix2014t_csv

    train = read_phoenix2014t_csv(real_data_dir / "phoenix-2014t/PHOENIX-2014-T.train.corpus.csv")
    vocab = GlossVocabulary.from_training_samples(train)
    assert len(vocab.glosses) == 1085
    dev = read_phoenix2014t_csv(real_data_dir / "phoenix-2014t/PHOENIX-2014-T.dev.corpus.csv")
    for s in dev:
        vocab.encode(s.glosses)
    assert 0 < sum(vocab.unknown_counts.values()) < 100  # dev has a few glosses train never saw
