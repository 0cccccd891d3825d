"""gcnas.schema: config sections read through typed dataclasses, every refusal one ConfigError naming the key."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import pytest

from gcnas.errors import ConfigError
from gcnas.schema import defaults, key, read, read_known


@dataclass
class _Section:
    n: int = key(3, ge=1)
    rate: Optional[float] = key(None, gt=0, le=1)
    threads: Union[int, str] = key("auto", ge=1, words=("auto",))
    mode: str = key("a", words=("a", "b"))
    flag: bool = False
    tags: list[str] = key(factory=list)


@pytest.mark.parametrize("data,message", [
    ({"n": "many"}, "sec.n: must be an integer >= 1; got 'many'"),
    ({"n": 0}, "sec.n: must be an integer >= 1; got 0"),
    ({"n": True}, "sec.n: must be an integer >= 1; got True"),
    ({"rate": 1.5}, "sec.rate: must be a number in (0, 1] or null; got 1.5"),
    ({"rate": "x"}, "sec.rate: must be a number in (0, 1] or null; got 'x'"),
    ({"threads": "many"}, "sec.threads: must be auto or an integer >= 1; got 'many'"),
    ({"threads": 0}, "sec.threads: must be auto or an integer >= 1; got 0"),
    ({"mode": "c"}, "sec.mode: must be one of a, b; got 'c'"),
    ({"flag": "maybe"}, "sec.flag: must be true or false; got 'maybe'"),
    ({"tags": "a,b"}, "sec.tags: must be a list of strings; got 'a,b'"),
    ({"colour": 1}, "sec.colour: unknown key; valid keys are n, rate, threads, mode, flag, tags"),
])
def test_a_bad_value_is_one_error_naming_key_value_and_valid_values(data, message):
    with pytest.raises(ConfigError) as e:
        read(_Section, data, "sec")
    assert str(e.value) == message


def test_values_are_read_with_defaults_filled_in():
    s = read(_Section, {"n": 5, "threads": 2, "rate": 1, "tags": ["x"]}, "sec")
    assert (s.n, s.threads, s.rate, s.mode, s.flag, s.tags) == (5, 2, 1.0, "a", False, ["x"])
    assert read(_Section, None) == _Section()
    assert defaults(_Section) == {"n": 3, "rate": None, "threads": "auto", "mode": "a", "flag": False, "tags": []}


def test_read_known_leaves_the_other_readers_keys_alone():
    assert read_known(_Section, {"n": 2, "root": "/data", "size": 9}, "data").n == 2
    with pytest.raises(ConfigError, match="data.n: must be an integer >= 1; got -1"):
        read_known(_Section, {"n": -1, "root": "/data"}, "data")


def test_the_composed_config_holds_the_schemas_defaults(tmp_path):
    """conf/config.yaml states none of these keys' defaults: they come from the dataclasses through the ConfigStore,
    and reading the composed config gives exactly the dataclasses' defaults back."""
    from hydra import compose, initialize_config_module
    from gcnas.search.config import ConstraintsConfig, JobConfig, SearchConfig, StudyConfig, read_job
    from gcnas.track.config import WandbConfig
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="gcnas.conf", version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config", overrides=[f"paths.root={tmp_path}"]), resolve=True)
    job = read_job(cfg)
    assert job.search == SearchConfig() and job.constraints == ConstraintsConfig()
    study_defaults = defaults(StudyConfig)
    assert {k: getattr(job.study, k) for k in study_defaults} == study_defaults
    wandb = read(WandbConfig, cfg["wandb"], "wandb")
    assert (wandb.project, wandb.tags, wandb.init_timeout) == ("gcnas", [], 30)
    assert set(defaults(JobConfig)) <= set(cfg)
    yaml_text = (Path(__file__).parents[1] / "conf" / "config.yaml").read_text()
    for k in ("n_trials", "supernet_epochs", "init_timeout", "max_params", "progress"):
        assert f"{k}:" not in yaml_text, k  # stated once, in the dataclass
