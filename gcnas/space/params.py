"""One searchable value of a space: fixed (a scalar), a categorical choice (a list) or a range (``{low, high, step?,
log?}``), and how Optuna names a choice."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence


@dataclass(frozen=True)
class Param:
    """One searchable value: fixed, categorical or a range."""

    kind: str  # "fixed" | "choice" | "int" | "float"
    value: Any = None
    choices: tuple = ()
    low: float = 0
    high: float = 0
    step: Optional[float] = None
    log: bool = False

    def suggest(self, trial: Any, name: str) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            encoded = [encode(c) for c in self.choices]
            picked = trial.suggest_categorical(name, encoded)
            return self.choices[encoded.index(picked)]
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)

    def values(self) -> Optional[list]:
        """Every value, where finite."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is not None:
            n = int(round((self.high - self.low) / self.step))
            return [self.low + i * self.step for i in range(n + 1)]
        return None

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"


def encode(value: Any) -> Any:
    """Optuna's categorical choices are scalars: lists (an explicit block list) become strings."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def fmt(values: Sequence) -> str:
    """Values as an error message lists them (YAML's null for None)."""
    return ", ".join("null" if v is None else repr(v) for v in values)
