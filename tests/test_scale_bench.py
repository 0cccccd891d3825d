"""benchmarks/scale.py: the search's cost per trial, timed around the real driver's steps."""
from __future__ import annotations

import time

import pytest

from benchmarks.scale import PARTS, PROBES, WORK, Stopwatch, main


def test_a_part_is_timed_without_the_parts_called_inside_it():
    watch = Stopwatch()

    def inner():
        time.sleep(0.05)

    timed_inner = watch.timed("dedupe", inner)

    def outer():
        time.sleep(0.02)
        timed_inner()

    watch.timed("storage", outer)()
    assert watch.totals["dedupe"] == pytest.approx(0.05, abs=0.03)
    assert watch.totals["storage"] == pytest.approx(0.02, abs=0.015)  # not 0.07: the nested part is left out


@pytest.mark.slow
def test_a_tiny_sqlite_study_prints_every_part_as_a_number(tmp_path, capsys):
    """6 trials of a one-shot study through the real worker (in its own process): one row, every column a number,
    every probe found, the parts adding up to the orchestration, and the scorer's time counted as the trial's own."""
    assert main(["--trials", "6", "--storages", "sqlite", "--workers", "1", "--sampler", "random",
                 "--keep", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not timed" not in out  # every probe of PROBES still names a function of gcnas
    lines = [line for line in out.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head[:4] == ["storage", "workers", "trials", "asked"]
    assert head[4:4 + len(PARTS)] == [f"{p} ms" for p in PARTS]
    (row,) = lines[2:]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["sqlite", "1", "6"]
    assert cells[head.index("growth")] == "-"  # the first size has none to grow from
    values = {h: float(c) for h, c in zip(head[3:], cells[3:]) if h != "growth"}  # a cell that is no number raises
    assert values["asked"] >= 6
    assert sum(values[f"{p} ms"] for p in PARTS) == pytest.approx(values["orchestration ms"], abs=0.2)
    assert values["ask ms"] > 0 and values["tell ms"] > 0 and values["dedupe ms"] > 0
    assert values["trial work ms"] > 0  # the supernet scored the trials (OneShotScorer.__call__ was timed)
    assert 0 < values["share of a 1.45 s trial %"] < 100
    assert any(part == WORK for _, _, part in PROBES)

