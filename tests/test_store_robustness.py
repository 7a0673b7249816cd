"""Hand-edited and damaged tuned files: a bad entry is skipped with a warning, dispatch never raises,
merges keep what they cannot read, `kernelgen show` and `info` report instead of crashing."""
import json
import sys
import warnings
from pathlib import Path

import pytest

from kernelgen import cli, dispatch, hardware, store

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import run  # noqa: E402
from test_dispatch import DEFAULT, H100, H200, entry, lookup, on_gpu, tuned  # noqa: E402,F401
from test_store import GPU, TOOLS  # noqa: E402
from test_store import entry as store_entry  # noqa: E402
from tune_fixtures import ScaleShift  # noqa: E402

# One field of an otherwise good entry, and the value that makes it malformed.
MALFORMED = {
    "shape list": ("shape", [8, 4096]), "shape null": ("shape", None), "shape float": ("shape", {"N": 8.5}),
    "config null": ("config", None), "config list": ("config", [1, 2]), "triton number": ("triton", 3.9),
    "ms null": ("ms", None), "ms string": ("ms", "0.1"), "ms nan": ("ms", float("nan")), "ms negative": ("ms", -1),
    "ms huge": ("ms", 10**400),
    "trials string": ("trials", "6"), "gbps string": ("gbps", "x"), "op number": ("op", 5),
}


def write_raw(path, entries, **header):
    """A tuned file with these raw entries (dicts as they would be in the JSON)."""
    data = {"schema": store.SCHEMA, "gpu": H100.identity(), "toolchain": {}, "templates": {}, "entries": entries}
    path.write_text(json.dumps({**data, **header}))


def good(N=1000, block=32, **fields):
    return {**entry(N, block).to_json(), **fields}


# --- 4: a malformed entry is skipped, not the file; dispatch never raises ----------------------------

@pytest.mark.parametrize("field, value", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_entry_is_skipped_with_a_warning_naming_file_and_index(tmp_path, field, value):
    path = tmp_path / "h100.json"
    write_raw(path, [good(), good(N=5000, **{field: value})])
    with pytest.warns(store.StoreWarning, match=rf"h100.json: skipped entry 1: {field} must"):
        loaded = store.load(path)
    assert [e.shape for e in loaded.entries] == [{"N": 1000}] and len(loaded.skipped) == 1


@pytest.mark.parametrize("field, value", MALFORMED.values(), ids=MALFORMED.keys())
def test_dispatch_runs_the_default_on_a_malformed_entry(tuned, tmp_path, field, value):
    write_raw(tmp_path / "h100.json", [good(**{field: value})])
    with pytest.warns(UserWarning):
        assert lookup() == DEFAULT
    assert lookup() == DEFAULT            # resolved once and cached: the second call does not raise either


@pytest.mark.parametrize("content", [b"\xff\xfe{", b"[" * 100_000], ids=["binary", "deeply nested"])
def test_an_unreadable_file_is_a_store_error_not_a_crash(tuned, tmp_path, content):
    (tmp_path / "h100.json").write_bytes(content)
    with pytest.raises(store.StoreError, match="h100.json: not"):
        store.load(tmp_path / "h100.json")
    with pytest.warns(dispatch.TuningWarning, match="tuned file unusable"):
        assert lookup() == DEFAULT


class RaisingCheck(ScaleShift):
    def check_config(self, config, shape, gpu=None):
        raise KeyError("block_t")


def test_a_check_that_raises_rejects_the_entry(tuned):
    tuned([entry(1000, 32)])
    template = RaisingCheck()
    template.__dict__["_source_hash"] = entry(1, 1).template_hash   # the entry is fresh for it
    with pytest.warns(dispatch.TuningWarning, match="does not fit: its check raised KeyError: 'block_t'"):
        assert dispatch.config_for(template, {"N": 1000}, "fp32", device="cuda") == DEFAULT


def test_a_missing_knob_takes_the_defaults_value(tuned, tmp_path):
    write_raw(tmp_path / "h100.json", [good(config={"block": 32}), good(N=100_000, config={})])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lookup(1000) == {**DEFAULT, "block": 32}
        assert lookup(100_000) == DEFAULT


@pytest.mark.parametrize("config, reason", [
    ({"block": 32.0, "variant": "a"}, r"block=32.0 is not one of the template's values"),
    ({"block": 32, "variant": "a", "bogus": 1}, r"'bogus' is not a knob of fake_scale_shift.fwd"),
])
def test_a_float_value_or_unknown_knob_is_refused(tuned, tmp_path, config, reason):
    write_raw(tmp_path / "h100.json", [good(config=config)])
    with pytest.warns(dispatch.TuningWarning, match=reason):
        assert lookup() == DEFAULT


@pytest.mark.parametrize("sibling", ["cc number", "cc string", "malformed entry"])
def test_a_damaged_sibling_file_neither_breaks_dispatch_nor_info(tuned, tmp_path, monkeypatch, capsys, sibling):
    """An H200 without its own file looks at h100.json to borrow from: damage there is skipped."""
    gpu = {**H100.identity(), "compute_capability": {"cc number": 9, "cc string": "9.0"}.get(sibling, [9, 0])}
    write_raw(tmp_path / "h100.json", [good(shape=[1]) if sibling == "malformed entry" else good()], gpu=gpu)
    on_gpu(monkeypatch, H200)
    with pytest.warns(UserWarning):
        assert lookup() == DEFAULT
    dispatch.reset()
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: H200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, out = run(capsys, "info")
    expected = "borrow those of h100" if sibling == "malformed entry" else "heuristic defaults"   # cc unreadable
    assert code == 0 and expected in " ".join(out.split())


def test_info_counts_skipped_entries(tuned, tmp_path, monkeypatch, capsys):
    write_raw(tmp_path / "h100.json", [good(), good(N=5000, ms=None)])
    monkeypatch.setattr(hardware, "detect_gpu", lambda index=0: H100)
    with pytest.warns(store.StoreWarning):
        code, out = run(capsys, "info")
    assert code == 0 and "(1 entries; 1 malformed ones skipped" in " ".join(out.split())


# --- 5: merges keep unknown keys, and say where a file they cannot read went -------------------------

def test_unknown_entry_keys_are_kept_through_a_merge(tmp_path):
    path = tmp_path / "h100.json"
    store.merge_write(path, GPU, [store_entry()], {}, TOOLS)
    data = json.loads(path.read_text())
    data["entries"][0]["notes"] = "hand tuned"
    path.write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.merge_write(path, GPU, [store_entry(T=65536)], {}, TOOLS)
    notes = {e.shape["T"]: e.extra.get("notes") for e in store.load(path).entries}
    assert notes == {4096: "hand tuned", 65536: None}
    assert "notes" in json.loads(path.read_text())["entries"][0]
    assert not list(tmp_path.glob("h100.json.*-*"))                 # nothing was moved aside


def test_a_corrupt_file_is_moved_aside_with_a_warning_naming_the_backup(tmp_path):
    path = tmp_path / "h100.json"
    path.write_text("{broken")
    with pytest.warns(store.StoreWarning, match=r"not valid JSON .*; moved it to .*h100.json.corrupt-") as record:
        store.merge_write(path, GPU, [store_entry()], {}, TOOLS)
    [aside] = tmp_path.glob("h100.json.corrupt-*")
    assert str(aside) in str(record[0].message) and aside.read_text() == "{broken"


def test_backups_in_the_same_second_do_not_overwrite_each_other(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "now", lambda: "2025-01-01T00:00:00Z")
    path = tmp_path / "h100.json"
    for text in ("{first", "{second", "{third"):
        path.write_text(text)
        with pytest.warns(store.StoreWarning):
            store.merge_write(path, GPU, [store_entry()], {}, TOOLS)
    kept = sorted(p.read_text() for p in tmp_path.glob("h100.json.corrupt-*"))
    assert kept == ["{first", "{second", "{third"]


def test_a_merge_copies_a_file_with_malformed_entries_aside_before_dropping_them(tmp_path):
    path = tmp_path / "h100.json"
    write_raw(path, [good(), good(N=5000, shape=[1, 2])])
    original = path.read_text()
    with pytest.warns(store.StoreWarning, match=r"dropped 1 malformed entries \(entry 1: shape must .*kept at "):
        store.merge_write(path, H100.identity(), [entry(100_000, 64)], {}, TOOLS)
    [aside] = tmp_path.glob("h100.json.malformed-*")
    assert aside.read_text() == original
    assert sorted(e.shape["N"] for e in store.load(path).entries) == [1000, 100_000]


def test_a_merge_keeps_the_files_mode_and_a_new_file_follows_the_umask(tmp_path):
    """Written through a temporary file, which mkstemp makes 0600: the result must stay readable
    to the other users of a shared install."""
    import os
    path = tmp_path / "h100.json"
    store.merge_write(path, GPU, [store_entry()], {}, TOOLS)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o640)
    store.merge_write(path, GPU, [store_entry(T=65536)], {}, TOOLS)
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_merge_writes_through_a_link_and_leaves_nothing_when_it_fails(tmp_path):
    shared = tmp_path / "shared" / "h100.json"
    shared.parent.mkdir()
    store.merge_write(shared, GPU, [store_entry()], {}, TOOLS)
    link = tmp_path / "h100.json"
    link.symlink_to(shared)
    store.merge_write(link, GPU, [store_entry(T=65536)], {}, TOOLS)
    assert link.is_symlink() and len(store.load(shared).entries) == 2
    bad = store_entry(T=1)
    bad.config = {"block": {1, 2}}                                   # a set: json cannot write it
    with pytest.raises(TypeError):
        store.merge_write(link, GPU, [bad], {}, TOOLS)
    assert len(store.load(shared).entries) == 2
    assert sorted(p.name for p in shared.parent.iterdir()) == ["h100.json", "h100.json.lock"]


def test_dispatch_names_why_no_entry_shares_a_dimension(tuned, tmp_path):
    write_raw(tmp_path / "h100.json", [good(shape={"n": 1000})])
    with pytest.warns(Warning, match=r"has a shape sharing a dimension with \{'N': 1000\} \(entries at \{'n': 1000\}\)"):
        assert lookup(1000) == DEFAULT


# --- 9: `kernelgen show` ---------------------------------------------------------------------------

def test_show_lists_good_entries_and_names_skipped_ones(tmp_path, capsys):
    write_raw(tmp_path / "h100.json", [good(), good(N=5000, ms="0.1"), good(N=7000, config={"variant": "[/]"})])
    code, out = run(capsys, "show", "--dir", str(tmp_path))
    out = " ".join(out.split())
    assert code == 0 and "N=1000" in out and "variant=[/]" in out
    assert "h100.json: skipped entry 1: ms must be a finite number > 0; got '0.1'" in out


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_show_exits_nonzero_when_a_file_cannot_be_read(tmp_path, capsys, damage):
    (tmp_path / "h100.json").write_text("{broken")
    argv = ("--gpu", "h200") if damage == "missing" else ()
    code, out = run(capsys, "show", "--dir", str(tmp_path), *argv)
    assert code == 1 and ("cannot read" if damage == "missing" else "not valid JSON") in out


# --- KERNELGEN_BORROW_TUNED ------------------------------------------------------------------------

@pytest.mark.parametrize("value, borrows", [("0", False), ("false", False), ("No", False), (" OFF ", False),
                                            ("1", True), ("yes", True)])
def test_borrowing_is_turned_off_by_any_false_word(tuned, monkeypatch, value, borrows):
    tuned([entry(1000, 32)])
    monkeypatch.setenv("KERNELGEN_BORROW_TUNED", value)
    on_gpu(monkeypatch, H200)
    with pytest.warns(dispatch.TuningWarning, match="tuned on" if borrows else "heuristic default"):
        assert lookup()["block"] == (32 if borrows else DEFAULT["block"])
