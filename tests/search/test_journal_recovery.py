"""A journal file whose last record was cut short (a crash or power cut mid-write) is repaired
on open: the torn bytes go (with a warning), every complete record stays, appends continue."""

from __future__ import annotations

import warnings

import optuna
import pytest

from kvmodel import search
from kvmodel.search._storage import JournalFile, JournalRepaired, repair_torn_tail

SMALL = "tier-sizing-small"
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def journal(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("j") / "s.journal"
    search.run(SMALL, n_trials=3, storage=str(path), sampler="random")
    return path.read_bytes()


def _open(path) -> tuple[optuna.Study, list]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        st = optuna.load_study(study_name=SMALL, storage=search.open_storage(str(path)))
    return st, [w for w in caught if issubclass(w.category, JournalRepaired)]


def test_a_crash_at_every_byte_of_the_last_record_is_recovered(journal, tmp_path):
    start = journal.rstrip(b"\n").rfind(b"\n") + 1      # the last record: journal[start:]
    assert journal[start:].startswith(b'{"op_code":') and len(journal) - start > 100
    path = tmp_path / "t.journal"
    for cut in range(start, len(journal)):             # cut == start: a clean cut
        path.write_bytes(journal[:cut])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            JournalFile(str(path))                      # opening repairs
        assert len(caught) == (cut > start), cut
        assert path.read_bytes() == journal[:start], cut
    for cut in [*range(start, len(journal), 16), len(journal) - 1]:   # and the study goes on
        path.write_bytes(journal[:cut])
        st, repaired = _open(path)
        assert len(repaired) == (cut > start), cut
        assert len(st.trials) == 2, cut                 # the last record was trial 3
        st.set_user_attr("after_repair", cut)           # appends continue ...
        again, repaired = _open(path)                   # ... and the file loads cleanly
        assert again.user_attrs["after_repair"] == cut and not repaired


def test_the_audit_repro_search_continues_after_a_torn_tail(journal, tmp_path):
    """printf '{"op_code":4,"wor' >> s.journal, then search again: it used to append after
    the partial bytes, and every later load failed with JSONDecodeError."""
    path = tmp_path / "s.journal"
    path.write_bytes(journal + b'{"op_code":4,"wor')
    with pytest.warns(JournalRepaired, match="17 byte"):
        st = search.run(SMALL, n_trials=6, storage=str(path), sampler="random")
    assert [t.state.name for t in st.trials] == ["COMPLETE"] * 6
    st, repaired = _open(path)
    assert len(st.trials) == 6 and not repaired


def test_repair_leaves_a_whole_file_alone_and_handles_no_newline_at_all(tmp_path):
    p = tmp_path / "j"
    p.write_bytes(b'{"a":1}\n{"b":2}\n')
    assert repair_torn_tail(p) == 0 and p.read_bytes() == b'{"a":1}\n{"b":2}\n'
    p.write_bytes(b'{"op_code":0,"st')
    with pytest.warns(JournalRepaired):
        assert repair_torn_tail(p, chunk=4) == 16    # scans back in small chunks too
    assert p.read_bytes() == b""
