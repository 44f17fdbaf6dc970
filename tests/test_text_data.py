"""The shipped text corpus (lab.data.load_text): the recorded file, its size, the fixed
vocabulary and its round trip, and a split that is deterministic and disjoint."""
import gzip
import hashlib
from importlib import resources

import numpy as np
import pytest

from lab import data
from lab.datasets import make_text

FILE_SHA256 = "3e9ebc257e1eada1832d1fe95d179a38fd48595b866384ddaf48dccdebe4b3c6"
CHARACTERS = 1_040_493


@pytest.fixture(scope="module")
def corpus():
    return data.load_text()


def _packed() -> bytes:
    return resources.files("lab").joinpath(data.TEXT_FILE).read_bytes()


def test_the_file_is_the_recorded_one_and_the_loader_checks_its_text():
    packed = _packed()
    assert hashlib.sha256(packed).hexdigest() == FILE_SHA256
    assert hashlib.sha256(gzip.decompress(packed)).hexdigest() == data.TEXT_SHA256
    assert len(packed) == 242_245   # about a quarter of the text


def test_a_changed_file_is_refused():
    text = gzip.decompress(_packed())
    changed = gzip.compress(text.replace(b"def ", b"def  ", 1), mtime=0)
    with pytest.raises(ValueError, match="python_stdlib.txt.gz has changed: its text has sha256 [0-9a-f]{64}"):
        data.decode_text_file(changed)
    assert data.decode_text_file(_packed()) == text.decode("ascii")


def test_sizes_vocabulary_and_dtypes(corpus):
    assert len(corpus.text) == CHARACTERS                       # about 1 MB
    assert corpus.vocab == data.TEXT_VOCAB and len(corpus.vocab) == 96
    assert corpus.vocab[0] == "\n" and corpus.vocab[1:] == "".join(map(chr, range(32, 127)))
    n_val = round(0.1 * CHARACTERS)
    assert corpus.train.shape == (CHARACTERS - n_val,) and corpus.validation.shape == (n_val,)
    assert corpus.train.dtype == np.int32 and corpus.validation.dtype == np.int32
    ids = np.concatenate([np.asarray(corpus.train), np.asarray(corpus.validation)])
    assert ids.min() == 0 and ids.max() == 95                   # '\n' and '~' both occur
    assert len(np.unique(ids)) == 96                            # every character occurs
    assert corpus.text.startswith("# ==== Lib/argparse.py ====\n")
    assert corpus.text.count("# ==== Lib/") == len(make_text.SOURCES) == 14


def test_vocabulary_round_trip(corpus):
    ids = np.concatenate([np.asarray(corpus.train), np.asarray(corpus.validation)])
    assert corpus.decode(ids) == corpus.text
    np.testing.assert_array_equal(corpus.encode(corpus.text), ids)
    sample = "def f(x):\n    return x ~ 1  # {}[]'\"\\"
    assert corpus.decode(corpus.encode(sample)) == sample
    np.testing.assert_array_equal(corpus.encode("\n ~A"), [0, 1, 95, 34])
    with pytest.raises(ValueError, match=r"outside the vocabulary: \['\\t', 'é'\]"):
        corpus.encode("caf\u00e9\t")


def test_split_is_deterministic_contiguous_and_disjoint(corpus):
    again = data.load_text()
    np.testing.assert_array_equal(again.train, corpus.train)
    np.testing.assert_array_equal(again.validation, corpus.validation)
    n_train = corpus.train.shape[0]
    # the training part is the text's beginning and the validation part its end: no overlap
    assert corpus.decode(corpus.train) == corpus.text[:n_train]
    assert corpus.decode(corpus.validation) == corpus.text[n_train:]
    assert corpus.train.shape[0] + corpus.validation.shape[0] == len(corpus.text)
    # the held-out tail is the end of subprocess.py and all of threading.py, unseen in training
    assert "# ==== Lib/threading.py ====" in corpus.text[n_train:]
    assert "# ==== Lib/threading.py ====" not in corpus.text[:n_train]
    assert "# ==== Lib/subprocess.py ====" in corpus.text[:n_train]
    quarter = data.load_text(validation_fraction=0.25)
    assert quarter.validation.shape == (round(0.25 * CHARACTERS),)
    np.testing.assert_array_equal(quarter.train, corpus.train[:quarter.train.shape[0]])
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="validation_fraction must lie in"):
            data.load_text(validation_fraction=bad)


def test_make_text_writes_the_format_the_shipped_text_has(tmp_path):
    """build() on a stand-in library gives header + text per file, in SOURCES order; the
    shipped text has exactly those headers.  (On CPython 3.11.7, the interpreter it was
    made with, ``python -m lab.datasets.make_text`` rewrites the same bytes.)"""
    import re

    for name in make_text.SOURCES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"x = {name!r}\n")
    built = make_text.build(tmp_path)
    assert built == "".join(f"# ==== Lib/{n} ====\nx = {n!r}\n\n" for n in make_text.SOURCES)
    (tmp_path / make_text.SOURCES[0]).write_text("caf\u00e9\n")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        make_text.build(tmp_path)
    shipped = data.decode_text_file(resources.files("lab").joinpath(data.TEXT_FILE).read_bytes())
    headers = re.findall(r"^# ==== Lib/(\S+) ====$", shipped, re.M)
    assert headers == list(make_text.SOURCES)
