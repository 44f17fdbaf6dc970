"""Regenerate ``python_stdlib.txt.gz``, the character-level corpus of ``lab.data.load_text``.

The corpus is the concatenation of ``SOURCES``, a fixed sorted list of Python
standard-library modules (PSF-licensed; see ``TEXT_LICENSE.md``), read from the running
interpreter's ``sysconfig.get_paths()["stdlib"]``.  Each file is preceded by one header
line ``# ==== Lib/<path> ====`` and followed by a blank line.  Every chosen file is plain
ASCII, so the whole text is written in ``lab.data.TEXT_VOCAB`` (newline and the 95
printable ASCII characters); the script refuses a file with any other character.

The shipped file was made from CPython 3.11.7.  Another Python release has other sources,
so the text, and its SHA-256, change: after regenerating, update ``lab.data.TEXT_SHA256``
(the loader refuses a text whose hash differs) and the hashes in ``TEXT_LICENSE.md`` and
``tests/test_text_data.py``.  The gzip stream is written with mtime 0 and no file name,
so the same text gives the same bytes with the same zlib.

    python -m lab.datasets.make_text          # writes lab/datasets/python_stdlib.txt.gz
"""
from __future__ import annotations

import gzip
import hashlib
import sys
import sysconfig
from pathlib import Path

SOURCES = (  # sorted; about 1.04 MB together in CPython 3.11.7
    "argparse.py",
    "ast.py",
    "collections/__init__.py",
    "dataclasses.py",
    "datetime.py",
    "difflib.py",
    "enum.py",
    "inspect.py",
    "ipaddress.py",
    "pathlib.py",
    "pickle.py",
    "shutil.py",
    "subprocess.py",
    "threading.py",
)
ALLOWED = frozenset("\n" + "".join(chr(c) for c in range(32, 127)))  # = lab.data.TEXT_VOCAB
OUTPUT = Path(__file__).resolve().parent / "python_stdlib.txt.gz"


def build(stdlib: str | Path | None = None) -> str:
    """The corpus text: each of ``SOURCES`` under ``stdlib`` after its header line."""
    root = Path(sysconfig.get_paths()["stdlib"] if stdlib is None else stdlib)
    if list(SOURCES) != sorted(SOURCES):
        raise ValueError("SOURCES must be sorted")
    parts = []
    for name in SOURCES:
        text = (root / name).read_bytes().decode("utf-8")
        bad = sorted(set(text) - ALLOWED)
        if bad:
            raise ValueError(f"{root / name} has characters outside the vocabulary: {bad[:10]}")
        parts.append(f"# ==== Lib/{name} ====\n{text}\n")
    return "".join(parts)


def write(text: str, path: str | Path = OUTPUT) -> bytes:
    """Write ``text`` as a reproducible gzip stream (mtime 0, no name); return the bytes."""
    raw = text.encode("ascii")
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return Path(path).read_bytes()


def main() -> None:
    text = build()
    packed = write(text)
    print(f"Python {sys.version.split()[0]}: {len(SOURCES)} files, {len(text):,} characters, "
          f"{len(packed):,} bytes compressed -> {OUTPUT}")
    print(f"sha256 of the text: {hashlib.sha256(text.encode('ascii')).hexdigest()}")
    print(f"sha256 of the file: {hashlib.sha256(packed).hexdigest()}")


if __name__ == "__main__":
    main()
