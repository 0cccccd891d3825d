"""gcnas-blocks prints the paper's members with honest numbers."""
from __future__ import annotations

import subprocess
import sys

from gcnas.cli import blocks


def test_run_reports_every_member():
    rows = blocks.run(channels=32, size=6, batch=2, repeats=1)
    by_name = {r["member"]: r for r in rows}
    assert set(by_name) == {"gc", "gc_r4", "gc_scale", "gc_scale_add", "gc_avg", "se", "snl", "nl"}
    assert by_name["gc"]["identity_at_init"] and not by_name["se"]["identity_at_init"]
    assert by_name["nl"]["maps_per_image"] == 36 and by_name["gc"]["maps_per_image"] == 1
    # NL's pairwise attention costs far more than the query-independent pooling (paper, Table 1).
    assert by_name["nl"]["mflops"] > 5 * by_name["gc"]["mflops"]
    assert by_name["gc"]["params"] < by_name["gc_r4"]["params"] < by_name["snl"]["params"]


def test_console_script_prints_table():
    out = subprocess.run([sys.executable, "-m", "gcnas.cli.blocks", "--channels", "32", "--size", "4", "--batch",
                          "2", "--repeats", "1"], capture_output=True, text=True, check=True)
    assert "| gc | att | bottleneck r=1/16 layernorm | add |" in out.stdout


def test_bad_arguments_exit_nonzero_with_message():
    out = subprocess.run([sys.executable, "-m", "gcnas.cli.blocks", "--channels", "8"], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert "--channels must be >= 16" in out.stderr
