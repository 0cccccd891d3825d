"""The trial record (gcnas.search.record) is the schema of what a study stores: every user attribute a real study
writes is declared there, with the type it declares, and gcnas's own code names attributes only through it."""
from __future__ import annotations

import re
from pathlib import Path

import optuna

from gcnas.machine import cpu_model
from gcnas.search import record

GCNAS = Path(__file__).resolve().parents[1] / "gcnas"


def _check(holder, declared: dict, keyed=()) -> None:
    for name, value in holder.user_attrs.items():
        attr = declared.get(name) or next((k for k in keyed if k.owns(name)), None)
        assert attr is not None, f"user attribute {name!r} is not declared in gcnas.search.record"
        assert isinstance(value, attr.types), f"{name}: {type(value).__name__} is not {attr.types}"


def test_every_attribute_a_study_writes_is_declared_with_its_type(searched):
    _, _, study = searched
    trials = {a.name: a for a in record.TRIAL_ATTRS}
    seen = set()
    for t in study.get_trials():
        _check(t, trials)
        seen |= set(t.user_attrs)
    _check(study, {a.name: a for a in record.STUDY_ATTRS}, record.STUDY_KEYED)
    # the fixture's study is a real one: what every trained trial carries is there to be checked
    assert {"role", "arch_key", "trial_key", "params", "flops", "epochs", "weights", "machine"} <= seen
    # what its trials share lives once on the study, by key, and every trial's is there
    assert not seen & {"architecture", "train"}
    for t in study.get_trials():
        assert study.user_attrs[f"arch:{t.user_attrs['arch_key']}"] == record.architecture_of(study, t)
        assert record.recipe_of(study, t)["epochs"] == 2
        # the machine too: the trial keeps its key, the study the description, the same for every trial here
        machine = study.user_attrs[f"machine:{t.user_attrs['machine']}"]
        assert record.machine_of(study, t) == machine and machine.startswith(cpu_model())


def test_interrupted_infeasible_and_retried_trials_are_declared_too():
    study = optuna.create_study()
    t = study.ask()
    for attr, value in ((record.INFEASIBLE, "search space limits: 0 blocks"), (record.INTERRUPTED, "SIGINT"),
                        (record.RETRY_OF, 3), (record.RETRY_REASON, "stopped"), (record.CANCELLED, "budget"),
                        (record.CONSTRAINTS, [1.0]), (record.LATENCY_MS, None)):
        attr.set(t, value)
        assert attr.on(t) and attr.get(t) == value and isinstance(value, attr.types)
    assert not record.ERROR.on(t) and record.ERROR.get(t, "none") == "none"


def test_gcnas_names_user_attributes_only_through_the_record():
    bare = re.compile(r"""(set_user_attr\(\s*["']|user_attrs(\.get\(|\[)\s*["']|["'][a-z_]+["']\s+(not\s+)?in\s+"""
                      r"""[\w.]+\.user_attrs)""")
    offenders = [f"{p.relative_to(GCNAS.parent)}:{i}" for p in GCNAS.rglob("*.py") if p.name != "record.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if bare.search(line)]
    assert not offenders, f"user attributes named by a bare string (use gcnas.search.record): {offenders}"
