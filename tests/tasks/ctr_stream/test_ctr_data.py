"""Slot-format parsing, pass planning, donefile waiting and prefetching."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.data import (
    DataError,
    DataWaitTimeout,
    LoadCancelled,
    PassLoader,
    PassReader,
    Prefetcher,
    list_data_files,
    pass_intervals,
    plan_passes,
    wait_for_donefile,
)
from workbench.tasks.ctr_stream.slots import parse_slot_lines, render_slot_lines

GOOD = b"id-1\t1:1 123:2 456:3 456:3 0:4\n0:1 789:2 5:999\n"


def test_parse_good_lines_with_ins_id_padding_and_repeated_features():
    p = parse_slot_lines(GOOD, with_ins_id=True)
    assert p.labels.tolist() == [1.0, 0.0]
    assert p.offsets.tolist() == [0, 3, 5]
    assert p.keys.tolist() == [123, 456, 456, 789, 5]  # feasign 0 (padding) dropped, repeats kept
    assert p.slots.tolist() == [2, 3, 3, 2, 999]
    assert p.ins_ids == ["id-1", ""]
    assert p.bad_count == 0 and p.total_lines == 2


def test_only_the_wanted_slots_are_kept():
    keep = np.zeros(65536, dtype=bool)
    keep[[2, 3]] = True
    p = parse_slot_lines(GOOD, keep_slots=keep)
    assert p.keys.tolist() == [123, 456, 456, 789]


def test_malformed_lines_are_skipped_counted_and_quoted_with_their_line_number():
    data = (b"1:1 5:2\n"
            b"\n"  # blank: not counted
            b"1:1 abc:2\n"  # not digits
            b"1:1 5:2 18446744073709551616:3\n"  # feasign above 2**64-1
            b"7:2 8:3\n"  # no click label
            b"1:1 0:1 4:2\r\n"  # two labels (the CR is just whitespace)
            b"0:1 18446744073709551615:70000\n"  # slot above 65535
            b"0:1 4::2\n"
            b"0:1 18446744073709551615:65535\n")
    p = parse_slot_lines(data)
    assert p.total_lines == 8 and p.bad_count == 6
    assert p.line_numbers.tolist() == [1, 9]
    assert p.keys.tolist() == [5, 2**64 - 1]
    assert [b.line for b in p.bad_lines] == [3, 4, 5, 6, 7]
    assert "abc:2" in p.bad_lines[0].reason and p.bad_lines[0].text == "1:1 abc:2"
    assert "no click label" in p.bad_lines[2].reason
    assert "2 click labels" in p.bad_lines[3].reason


def _reference_parse(text: str) -> tuple[list, list]:
    """A slow, obvious parser: (good lines as (label, [(key, slot)]), bad line numbers)."""
    good, bad = [], []
    for number, line in enumerate(text.split("\n"), 1):
        body = line.split("\t", 1)[1] if "\t" in line else line
        tokens = body.split()
        if not line.strip():
            continue
        try:
            pairs = []
            for tok in tokens:
                key, slot = tok.split(":")
                assert key.isdigit() and slot.isdigit() and len(key) <= 20 and len(slot) <= 5
                assert int(key) < 2**64 and int(slot) <= 65535
                pairs.append((int(key), int(slot)))
            labels = [k for k, s in pairs if s == 1]
            assert len(labels) == 1
            good.append((float(labels[0] > 0), [(k, s) for k, s in pairs if s != 1 and k != 0]))
        except (AssertionError, ValueError):
            bad.append(number)
    return good, bad


def test_parser_agrees_with_a_reference_parser_on_random_text():
    rng = np.random.default_rng(3)
    pieces = ["1:1", "0:1", "12:2", "0:3", "18446744073709551615:4", "18446744073709551616:4", "99999999999999999999:5",
              "7:65535", "7:65536", "3:123456", "a:2", "5:", ":5", "5:5:5", "00042:0007", "1:1:1", "x", "9" * 21 + ":2",
              "123456789012345678:12", "8:2\t", "id\t"]
    lines = []
    for _ in range(3000):
        k = rng.integers(0, 8)
        toks = [pieces[i] for i in rng.integers(0, len(pieces), k)]
        prefix = "ins\t" if rng.random() < 0.3 else ""
        lines.append(prefix + " ".join(toks) + (" " if rng.random() < 0.1 else ""))
    text = "\n".join(lines) + "\n"
    parsed = parse_slot_lines(text.encode())
    good, bad = _reference_parse(text)
    assert parsed.bad_count == len(bad)
    assert parsed.labels.tolist() == [g[0] for g in good]
    flat = [pair for g in good for pair in g[1]]
    assert list(zip(parsed.keys.tolist(), parsed.slots.tolist())) == flat


def test_render_then_parse_round_trips():
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 30, 500)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    keys = rng.integers(1, 2**64 - 1, offsets[-1], dtype=np.uint64, endpoint=True)
    slots = rng.integers(2, 65536, offsets[-1])
    labels = (rng.random(500) < 0.3).astype(np.float32)
    text = render_slot_lines(labels, offsets, keys, slots, np.arange(500))
    p = parse_slot_lines(text, with_ins_id=True)
    assert (p.keys == keys).all() and (p.slots == slots).all() and (p.offsets == offsets).all()
    assert (p.labels == labels).all() and p.ins_ids[:3] == ["0", "1", "2"]


def test_pass_intervals_follow_paddlerec_code():
    five = pass_intervals(5, 2, False)
    assert five[0] == ["0000", "0005"] and five[1] == ["0010", "0015"] and len(five) == 144
    thirty = pass_intervals(30, 2, False)
    assert len(thirty) == 24 and thirty[-1] == ["2300", "2330"]
    assert pass_intervals(60, 1, True)[:2] == [["00"], ["01"]]


def test_plan_spans_days_and_marks_each_days_last_pass():
    cfg = CtrStreamConfig(start_day="20190730", end_day="20190801", split_interval=360, split_per_pass=2)
    plan = plan_passes(cfg)
    assert [(p.day, p.pass_id) for p in plan][:3] == [("20190730", 1), ("20190730", 2), ("20190731", 1)]
    assert [p.index for p in plan] == list(range(6)) and plan[-1].day == "20190801"
    assert [p.last_of_day for p in plan] == [False, True] * 3
    assert plan[0].splits == ("0000", "0600")


def write_slice(folder: Path, text: bytes, donefile: str = "data.done") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-00000").write_bytes(text)
    (folder / "_truth.npz").write_bytes(b"not data")
    if donefile:
        (folder / donefile).touch()


def test_listing_skips_the_donefile_and_underscore_or_hidden_files(tmp_path):
    write_slice(tmp_path / "a", GOOD)
    (tmp_path / "a" / ".hidden").write_text("x")
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "part-1").write_bytes(GOOD)
    assert [p.relative_to(tmp_path).as_posix() for p in list_data_files(tmp_path / "a", "data.done")] == [
        "a/part-00000", "a/sub/part-1"]


def test_waiting_for_a_slice_written_after_the_wait_started(tmp_path):
    folder = tmp_path / "20190720" / "0000"
    seen: list[str | None] = []

    def producer() -> None:
        time.sleep(0.4)
        write_slice(folder, GOOD)

    threading.Thread(target=producer).start()
    waited = wait_for_donefile(folder, "data.done", sleep_s=0.05, max_wait_s=10, stop=threading.Event(), on_wait=seen.append)
    assert waited >= 0.3 and "20190720/0000" in seen and seen[-1] is None


def test_waiting_fails_clearly_past_the_maximum_and_stops_on_request(tmp_path):
    with pytest.raises(DataWaitTimeout, match=r"no data.done in .*0005 after"):
        wait_for_donefile(tmp_path / "0005", "data.done", sleep_s=0.05, max_wait_s=0.2, stop=threading.Event())
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(LoadCancelled):
        wait_for_donefile(tmp_path / "0005", "data.done", sleep_s=5, max_wait_s=0, stop=stop)
    assert time.monotonic() - t0 < 2


def _cfg(tmp_path: Path, **kw) -> CtrStreamConfig:
    base = dict(train_data_dir=str(tmp_path), start_day="20190720", end_day="20190720", split_interval=720,
                split_per_pass=1, data_donefile="data.done", data_sleep_second=0.05, train_batch_size=2, slot_num=2)
    return CtrStreamConfig(**{**base, **kw})


def test_a_pass_fails_past_the_bad_line_ratio_naming_file_and_line(tmp_path):
    write_slice(tmp_path / "20190720" / "0000", b"1:1 5:2\n1:1 oops:2\n0:1 6:3\n")
    cfg = _cfg(tmp_path, max_bad_line_ratio=0.2)
    loader = PassLoader(cfg, tmp_path, PassReader(cfg), threading.Event())
    with pytest.raises(DataError, match=r"part-00000:2: token 'oops:2'"):
        loader.load(plan_passes(cfg)[0])
    lenient = _cfg(tmp_path, max_bad_line_ratio=0.5)
    data = PassLoader(lenient, tmp_path, PassReader(lenient), threading.Event()).load(plan_passes(cfg)[0])
    assert data.examples == 2 and data.bad_lines == 1


def test_batches_hold_every_impression_with_its_bags_and_merged_show_click(tmp_path):
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 6, 37)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    keys = rng.integers(1, 20, offsets[-1]).astype(np.uint64)
    slots = rng.integers(2, 5, offsets[-1])
    labels = (rng.random(37) < 0.4).astype(np.float32)
    write_slice(tmp_path / "20190720" / "0000", render_slot_lines(labels, offsets, keys, slots))
    cfg = _cfg(tmp_path, train_batch_size=8, slot_num=3)
    data = PassLoader(cfg, tmp_path, PassReader(cfg), threading.Event()).load(plan_passes(cfg)[0])
    assert data.examples == 37 and sum(b.size for b in data.batches) == 37
    seen = []
    for b in data.batches:
        token_keys = data.keys[b.uniq][b.inverse]
        bags = np.searchsorted(b.bag_offsets, np.arange(b.inverse.size), side="right") - 1  # token -> bag
        for i in range(b.size):
            mine = (bags // 3) == i
            seen.append((b.labels[i], sorted(zip(token_keys[mine].tolist(), (bags[mine] % 3 + 2).tolist()))))
        assert np.allclose(b.show, np.bincount(b.inverse, minlength=b.uniq.size))
        lab = np.repeat(b.labels, np.diff(np.append(b.bag_offsets[::3], b.inverse.size)))
        assert np.allclose(b.click, np.bincount(b.inverse, weights=lab, minlength=b.uniq.size))
    original = [(labels[i], sorted(zip(keys[offsets[i]:offsets[i + 1]].tolist(), slots[offsets[i]:offsets[i + 1]].tolist())))
                for i in range(37)]
    assert sorted(seen, key=repr) == sorted(original, key=repr)  # shuffled, nothing lost


def test_prefetcher_reports_waits_and_surfaces_errors_without_crashing(tmp_path):
    cfg = _cfg(tmp_path, split_interval=360, end_day="20190720")
    plan = plan_passes(cfg)
    loader = PassLoader(cfg, tmp_path, PassReader(cfg), threading.Event())
    prefetcher = Prefetcher(loader, enabled=True)
    write_slice(tmp_path / "20190720" / "0000", GOOD)
    write_slice(tmp_path / "20190720" / "1200", b"garbage\n")
    prefetcher.start(plan[1])  # slice 0600 is not there yet: the background load waits for it
    waits: list[str | None] = []
    threading.Timer(0.5, write_slice, (tmp_path / "20190720" / "0600", GOOD)).start()
    assert prefetcher.get(plan[0], waits.append, lambda: False).examples == 2
    assert prefetcher.get(plan[1], waits.append, lambda: False).examples == 2
    assert "20190720/0600" in waits
    with pytest.raises(DataError, match="malformed"):
        prefetcher.get(plan[2], waits.append, lambda: False)
    prefetcher.close()
