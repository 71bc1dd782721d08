"""`ColumnMapping`: which column of a bank's table is the client, time, amount, MCC and the extra fields.

The recipe's `columns:` block; only this mapping changes between data sets. E.g. TabFormer (time spread
over four columns, amounts like "$134.09"):

    columns:
      client_id: Card
      event_time: [Year, Month, Day, Time]   # joined with single spaces, then parsed with time_format
      time_format: "%Y %m %d %H:%M"
      amount: Amount
      amount_format: currency                # opt-in: strip $ and thousands separators
      mcc: MCC
      categorical: [Use Chip]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ssl_modal.data.readers import DataValidationError, missing_columns_message

TIME_FORMATS = ("days", "seconds")  # numeric offsets; anything else is a strftime format
AMOUNT_FORMATS = ("currency", "decimal_comma")
TABLE_COLUMNS = ("client_id", "window", "start", "transaction_id", "event_time")  # SequenceSet meta columns


@dataclass
class ColumnMapping:
    """Names of the input columns. Output field names are "mcc", "amount", ... for the mapped roles and
    the column names themselves for the `categorical` / `numeric` extras (any name, e.g. "type")."""

    client_id: str
    event_time: str | list[str]  # one column, or several joined with spaces (then give time_format)
    amount: str
    mcc: str
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    transaction_id: str | None = None  # absent: the 0-based row number of the input table
    time_format: str | None = None  # strftime format, "days" / "seconds" for numeric offsets; None = infer
    amount_format: str | None = None  # None (plain numbers), "currency" ($1,234.50) or "decimal_comma" (1.234,50)

    def __post_init__(self):
        for key in ("client_id", "amount", "mcc"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"columns.{key}: expected a column name, found {getattr(self, key)!r}")
        for key in ("categorical", "numeric"):
            value = getattr(self, key)
            value = [value] if isinstance(value, str) else list(value or [])
            if not all(isinstance(c, str) for c in value):
                raise ValueError(f"columns.{key}: expected a list of column names, found {value!r}")
            setattr(self, key, value)
        if self.amount_format is not None and self.amount_format not in AMOUNT_FORMATS:
            raise ValueError(
                f"columns.amount_format: expected one of {list(AMOUNT_FORMATS)} or empty, found {self.amount_format!r}"
            )
        if isinstance(self.event_time, (list, tuple)):
            if not self.event_time or not all(isinstance(c, str) for c in self.event_time):
                raise ValueError(
                    f"columns.event_time: expected a column name or a non-empty list of names, "
                    f"found {self.event_time!r}"
                )
            if self.time_format in TIME_FORMATS:
                raise ValueError(
                    f"columns.time_format '{self.time_format}' needs a single event_time column, "
                    f"found {list(self.event_time)}"
                )
            self.event_time = list(self.event_time)
        elif not isinstance(self.event_time, str) or not self.event_time:
            raise ValueError(f"columns.event_time: expected a column name, found {self.event_time!r}")
        extras = self.categorical + self.numeric
        dup = sorted({c for c in extras if extras.count(c) > 1})
        if dup:
            raise ValueError(f"columns: {dup} listed more than once in categorical/numeric")

    @property
    def time_columns(self) -> list[str]:
        return list(self.event_time) if isinstance(self.event_time, list) else [self.event_time]

    def roles(self) -> list[tuple[str, str]]:
        """(role, input column) pairs in mapping order."""
        out = [("client_id", self.client_id)] + [("event_time", c) for c in self.time_columns]
        out += [("amount", self.amount), ("mcc", self.mcc)]
        out += [("categorical", c) for c in self.categorical] + [("numeric", c) for c in self.numeric]
        return out + ([("transaction_id", self.transaction_id)] if self.transaction_id else [])

    def required(self) -> list[str]:
        """Every input column the mapping reads, each once, in mapping order."""
        return list(dict.fromkeys(c for _, c in self.roles()))

    def check(self, frame: pd.DataFrame, source: str = "table") -> None:
        """Raise naming each missing mapped column, its role and the closest existing column name."""
        missing = [c for c in self.required() if c not in frame.columns]
        if missing:
            roles = {}
            for role, c in self.roles():
                roles.setdefault(c, role)
            where = ", ".join(f"'{c}' is columns.{roles[c]}" for c in missing)
            raise DataValidationError(
                missing_columns_message(source, missing, list(frame.columns)) + f"; in the column mapping {where}"
            )


def field_names(mapping: ColumnMapping, calendar: list[str]) -> tuple[list[str], list[str]]:
    """(categorical, numeric) output field names in their stable order; raise on clashes."""
    cat = ["mcc", "amount_bin", *calendar, *mapping.categorical]
    num = ["amount", "time_gap", *mapping.numeric]
    names = cat + num
    clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(TABLE_COLUMNS)))
    if clash:
        raise ValueError(
            f"columns: extra field name(s) {clash} clash with the built-in fields "
            f"{['mcc', 'amount_bin', 'amount', 'time_gap', *calendar]} or the sequence columns "
            f"{list(TABLE_COLUMNS)}; rename the column(s) in the table"
        )
    return cat, num
