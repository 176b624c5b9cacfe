"""Property-based tests of annotation files: valid files round-trip byte for byte; corrupted
files are rejected with an error naming the file and the 1-based line."""
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from abaw_workbench.core import AbawError
from abaw_workbench.annotations import HEADERS, NCOLS, read_annotation_file, write_annotation_file, format_annotations

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TASKS = ["au", "expr", "va"]
va_value = st.one_of(st.just(float("nan")), st.floats(-1, 1, allow_nan=False),
                     st.integers(-1000, 1000).map(lambda i: i / 1000))


@st.composite
def labels(draw, task=None, min_rows=0):
    "A task and a valid value array for it (markers included)."
    task = task or draw(st.sampled_from(TASKS))
    n = draw(st.integers(min_rows, 25))
    if task == "au":
        v = draw(st.lists(st.lists(st.sampled_from([0.0, 1.0, float("nan")]), min_size=12, max_size=12), min_size=n, max_size=n))
        return task, np.array(v, np.float32).reshape(n, 12)
    if task == "expr":
        return task, np.array(draw(st.lists(st.integers(-1, 7), min_size=n, max_size=n)), np.int8)
    v = draw(st.lists(st.lists(va_value, min_size=2, max_size=2), min_size=n, max_size=n))
    return task, np.array(v, np.float64).reshape(n, 2)


_TMP = tempfile.TemporaryDirectory(prefix="abaw_props_")  # removed when the module is collected away


def _file(text: str | bytes, name="12-24-1920x1080_left.txt"):
    p = Path(_TMP.name) / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


@SETTINGS
@given(labels())
def test_valid_files_round_trip_byte_for_byte(tv):
    task, v = tv
    text = format_annotations(task, v)
    p = _file(text)
    back = read_annotation_file(p, task)
    np.testing.assert_array_equal(back, v)          # NaN == NaN here; values exact
    assert back.dtype == {"au": np.float32, "expr": np.int8, "va": np.float64}[task]
    write_annotation_file(p.with_name("out.txt"), task, back)
    assert p.with_name("out.txt").read_bytes() == text.encode()


@SETTINGS
@given(labels(), st.booleans(), st.booleans())
def test_crlf_and_trailing_blank_line_are_tolerated(tv, crlf, blank):
    task, v = tv
    text = format_annotations(task, v) + ("\n" if blank else "")
    if crlf: text = text.replace("\n", "\r\n")
    np.testing.assert_array_equal(read_annotation_file(_file(text), task), v)


def _rows(task, v):
    return format_annotations(task, v).splitlines()


def _expect_error(text, task, line):
    p = _file(text)
    with pytest.raises(AbawError) as e: read_annotation_file(p, task)
    msg = str(e.value)
    assert str(p) in msg and f"line {line}:" in msg, msg
    return msg


@SETTINGS
@given(labels(), st.data())
def test_bad_header_is_rejected(tv, data):
    task, v = tv
    cols = HEADERS[task].split(",")
    bad = data.draw(st.one_of(
        st.just(",".join(cols[::-1])) if len(cols) > 1 else st.just("neutral"),
        st.just(",".join(cols[:-1] + ["X"])),
        st.just(",".join(cols + ["extra"])),
        st.sampled_from([h for t, h in HEADERS.items() if t != task]),
        st.just("")))
    rows = _rows(task, v)
    msg = _expect_error("\n".join([bad] + rows[1:]) + "\n", task, 1)
    assert "bad header" in msg


@SETTINGS
@given(labels(min_rows=1), st.data())
def test_wrong_column_count_is_rejected(tv, data):
    task, v = tv
    rows = _rows(task, v)
    i = data.draw(st.integers(1, len(rows) - 1))
    toks = rows[i].split(",")
    add = NCOLS[task] == 1 or data.draw(st.booleans())   # removing EXPR's only token would make a blank line
    toks = toks + ["0"] if add else toks[:-1]
    rows[i] = ",".join(toks)
    msg = _expect_error("\n".join(rows) + "\n", task, i + 1)
    assert f"expected {NCOLS[task]} column" in msg


def _spoil_token(task, v, data, bad):
    "A file of `v` with one token of one drawn data row replaced by a draw from `bad(last)` (`last`: that row is the file's last); the read error, which names that line."
    rows = _rows(task, v)
    i = data.draw(st.integers(1, len(rows) - 1))
    toks = rows[i].split(",")
    toks[data.draw(st.integers(0, len(toks) - 1))] = data.draw(bad(i == len(rows) - 1))
    rows[i] = ",".join(toks)
    return _expect_error("\n".join(rows) + "\n", task, i + 1)


@SETTINGS
@given(labels(min_rows=1), st.data())
def test_non_numeric_token_is_rejected(tv, data):
    task, v = tv
    bad = ["x", "one", "1.2.3", "0x1", "NaN", "nan", "NA", "1_0", "--1", "1e", "\u0661", "#N/A"]
    # an empty last EXPR line is a tolerated trailing blank line
    msg = _spoil_token(task, v, data, lambda last: st.sampled_from(bad + ([""] if NCOLS[task] > 1 or not last else [])))
    assert "non-numeric value" in msg


@SETTINGS
@given(labels(min_rows=1), st.data())
def test_out_of_range_value_is_rejected(tv, data):
    task, v = tv
    if task == "au": bad = st.sampled_from(["2", "-2", "0.5", "-5", "10"])
    elif task == "expr": bad = st.one_of(st.integers(8, 1000).map(str), st.integers(-1000, -2).map(str), st.just("2.5"))
    else: bad = st.one_of(st.floats(1, 1e6, exclude_min=True), st.floats(-1e6, -1, exclude_max=True)
                          .filter(lambda x: x != -5)).map(lambda x: np.format_float_positional(x, trim="-"))
    assert "out of range" in _spoil_token(task, v, data, lambda last: bad)


video_name = st.sampled_from(["1-30-1280x720", "video10_1", "118-30-640x480_left", "118-30-640x480_right", "5-60-1920x1080", "v"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(st.tuples(st.sampled_from(TASKS), video_name), min_size=1, max_size=8), st.data())
def test_split_round_trips_through_the_schema(plan, data):
    "Random split trees (videos with any mix of tasks and file lengths) read into the schema and write back identically."
    from abaw_workbench.annotations import read_split, write_annotations
    from abaw_workbench.layout import Layout
    with tempfile.TemporaryDirectory() as d:
        e = Layout.of(Path(d) / "src")
        texts = {}
        for t in TASKS: e.annotation_dir(t, "train").mkdir(parents=True)
        for task, video in sorted(plan):
            _, v = data.draw(labels(task=task, min_rows=1))   # a header-only file has no frames: nothing to write back
            p = e.annotation_dir(task, "train") / f"{video}.txt"
            p.parent.mkdir(parents=True, exist_ok=True)
            texts[(task, video)] = format_annotations(task, v)
            p.write_text(texts[(task, video)])
        ds = read_split(e, "train", tasks=TASKS, crops=False)
        assert list(ds.video.values) == sorted(ds.video.values)
        out = Path(d) / "out"
        write_annotations(ds, out, "train")
        written = {(t, p.stem): p.read_text() for t in TASKS for p in Layout.of(out).annotation_dir(t, "train").glob("*.txt")}
        assert written == texts
