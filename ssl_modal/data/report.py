"""Validation results: one `Problem` per reported place, grouped and capped in a `ValidationReport`.

Rows are 1-based data rows: row 1 is the first record after the CSV header (blank lines are
skipped); `line` is the physical line in the file (CSV/JSONL) so an editor can jump to it.
`Problem.where()` prints the line only when it differs from the row (as in JSONL files).
For huge files each kind of problem keeps its total count but only the first examples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .readers import DataValidationError

ROW_CONVENTION = (
    "row N = the N-th data record, 1-based, header not counted, blank lines skipped; line = line number in the file"
)


def show_value(value: Any, limit: int = 60) -> str:
    """How a found value is printed: strings quoted, missing values as 'empty'."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return "empty"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Problem:
    """One place where the data does not match. `path` is the JSON path inside a record."""

    row: int | None = None
    column: str | None = None
    expected: str | None = None
    found: str | None = None
    message: str = ""
    line: int | None = None
    file: str = ""
    kind: str = ""
    path: str | None = None
    note: str = ""

    def where(self) -> str:
        """'row 17 (line 18) at $.a' with whatever parts are known (line only when it differs)."""
        out = f"row {self.row}" if self.row is not None else ""
        if self.line is not None and self.line != self.row:
            out += f" (line {self.line})" if out else f"line {self.line}"
        if self.path and self.path != "$":
            out += f" at {self.path}" if out else self.path
        return out

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ValidationReport:
    """Result of `validate`. `.ok`, `.problems` (examples), `.counts` (total per problem kind)."""

    file: str
    schema: str
    n_rows: int | None = None
    max_examples: int = 5
    problems: list[Problem] = field(default_factory=list)
    counts: dict[tuple, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def n_problems(self) -> int:
        """Total number of problem places, including those not kept as examples."""
        return sum(self.counts.values())

    def add(
        self, kind: str, message: str, *, column=None, expected=None, found=None, row=None, line=None, path=None
    ) -> None:
        """Record one problem (kept as an example while its group has fewer than max_examples)."""
        key = (kind, column, expected)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] <= self.max_examples:
            self.problems.append(Problem(row, column, expected, found, message, line, self.file, kind, path))

    def add_rows(
        self,
        kind: str,
        column: str | None,
        expected: str,
        mask: np.ndarray,
        found: pd.Series | Callable[[np.ndarray], list],
        lines: np.ndarray | None,
        detail: Callable[[np.ndarray], list[str]] | None = None,
    ) -> None:
        """Record every row where `mask` is True: count all, build messages for the first few only."""
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        key = (kind, column, expected)
        already = self.counts.get(key, 0)
        self.counts[key] = already + int(idx.size)
        take = idx[: max(self.max_examples - already, 0)]
        values = found(take) if callable(found) else [show_value(v) for v in found.iloc[take]]
        extras = detail(take) if detail is not None else [""] * len(take)
        for i, value, extra in zip(take.tolist(), values, extras, strict=True):
            line = int(lines[i]) if lines is not None else None
            where = Problem(row=i + 1, line=line).where()
            col = f", column '{column}'" if column is not None else ""
            message = f"{where}{col}: expected {expected}, found {value}{extra}"
            self.problems.append(
                Problem(i + 1, column, expected, value, message, line, self.file, kind, note=extra.strip())
            )

    def __str__(self) -> str:
        if self.ok:
            rows = f" ({self.n_rows} rows)" if self.n_rows is not None else ""
            return f"OK: {self.file} matches schema '{self.schema}'{rows}"
        n = self.n_problems
        head = [
            f"FAILED: {self.file} does not match schema '{self.schema}': {n} problem{'s' * (n != 1)} "
            f"of {len(self.counts)} kind{'s' * (len(self.counts) != 1)}"
        ]
        if any(p.row is not None for p in self.problems):
            head.append(f"  ({ROW_CONVENTION})")
        for key, count in self.counts.items():
            examples = [p for p in self.problems if (p.kind, p.column, p.expected) == key]
            if count == 1 and len(examples) == 1:
                head.append(f"  - {examples[0].message}")
                continue
            kind, column, expected = key
            json = kind == "json_schema"
            subject = (
                (f"field '{column}'" if json else f"column '{column}'")
                if column is not None
                else ("record" if json else kind)
            )
            unit = "records" if json else ("rows" if all(p.row is not None for p in examples) else "places")
            shown = f", first {len(examples)} shown" if len(examples) < count else ""
            head.append(f"  - {subject}: expected {expected}: {count} {unit}{shown}")
            for p in examples:
                text = (
                    p.message
                    if json or p.found is None
                    else f"{p.where()}: found {p.found}{' ' + p.note if p.note else ''}"
                )
                head.append(f"      {text}")
        return "\n".join(head)

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "schema": self.schema,
            "ok": self.ok,
            "n_rows": self.n_rows,
            "n_problems": self.n_problems,
            "problems": [p.to_dict() for p in self.problems],
            "counts": [{"kind": k[0], "column": k[1], "expected": k[2], "count": c} for k, c in self.counts.items()],
        }

    def raise_if_failed(self) -> ValidationReport:
        """Raise DataValidationError carrying this report when there are problems; else return self."""
        if not self.ok:
            raise DataValidationError(str(self), report=self)
        return self
