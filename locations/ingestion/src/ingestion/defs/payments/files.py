"""The payment provider's files: finding them in the landing area and validating their rows.

File names carry the business day they belong to: `payments_YYYY-MM-DD.csv`, optionally with a
suffix for a second delivery of the same day (`payments_2026-11-20_resend.csv`). Producers
write to a hidden temporary name and rename; hidden files are never read.

A record is one line (the provider never quotes newlines). Validation splits every line into
a good row or a rejected one; a rejected line keeps its file,
line number, reason code, detail and the raw text, so nothing is lost and every rejection can
be explained. Columns beyond the required ones are carried through as text, so a provider that
adds a column adds it to raw.payments (dlt evolves the table) instead of breaking the load.
"""

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import fsspec

FILE_NAME = re.compile(r"^payments_(?P<day>\d{4}-\d{2}-\d{2})(?:_[A-Za-z0-9-]+)?\.csv$")
REQUIRED_COLUMNS = ("payment_id", "order_id", "amount", "currency", "method", "paid_at")
MAX_RAW_LINE = 2000
CENTS = Decimal("0.01")

# Reason codes of rejected rows.
WRONG_FIELD_COUNT = "wrong_field_count"
MISSING_FIELD = "missing_field"
BAD_TYPE = "bad_type"
BAD_VALUE = "bad_value"
DUPLICATE = "duplicate_payment_id"
UNKNOWN_ORDER = "unknown_order"
BAD_HEADER = "bad_header"


@dataclass(frozen=True)
class LandingFile:
    """A payment file in the landing area. `version` changes when the file is replaced
    (size and modification time, or the object store's ETag)."""

    name: str
    path: str
    day: date
    version: str = ""


def list_landing(url: str) -> list[LandingFile]:
    """Every payment file in the landing area (any fsspec URL), oldest day first."""
    fs, root = fsspec.core.url_to_fs(url)
    if not fs.exists(root):
        raise FileNotFoundError(f"payment landing area {url!r} does not exist")
    found = []
    for info in fs.ls(root, detail=True):
        path = info["name"]
        name = path.rstrip("/").rsplit("/", 1)[-1]
        match = FILE_NAME.match(name)
        if match and info.get("type") == "file":
            stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
            version = f"{info.get('size', '')}:{stamp}"
            found.append(LandingFile(name, path, date.fromisoformat(match["day"]), version))
    return sorted(found, key=lambda f: (f.day, f.name))


def read_text(url: str, file: LandingFile) -> str:
    fs, _ = fsspec.core.url_to_fs(url)
    with fs.open(file.path, "rb") as handle:
        return handle.read().decode("utf-8", errors="replace")


@dataclass
class ValidatedRows:
    """Good and rejected rows of one or more files."""

    good: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    extra_columns: set[str] = field(default_factory=set)

    def reject(self, file: LandingFile, line: int, reason: str, detail: str, raw: str) -> None:
        self.rejected.append({
            "file_date": file.day, "source_file": file.name, "source_line": line,
            "reason": reason, "detail": detail, "raw_line": raw[:MAX_RAW_LINE],
        })  # fmt: skip

    def rejected_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rejected:
            counts[row["reason"]] = counts.get(row["reason"], 0) + 1
        return dict(sorted(counts.items()))


def _parse_row(values: dict[str, str]) -> tuple[dict, tuple[str, str] | None]:
    """Typed values of one row, or the first (reason, detail) that makes it invalid."""
    for column in REQUIRED_COLUMNS:
        if not values.get(column, "").strip():
            return {}, (MISSING_FIELD, f"{column} is empty")
    row: dict = {}
    for column in ("payment_id", "order_id"):
        try:
            row[column] = int(values[column])
        except ValueError:
            return {}, (BAD_TYPE, f"{column}={values[column]!r} is not an integer")
    try:
        amount = Decimal(values["amount"])
    except InvalidOperation:
        return {}, (BAD_TYPE, f"amount={values['amount']!r} is not a decimal number")
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(CENTS):
        return {}, (BAD_VALUE, f"amount={values['amount']!r} is not a non-negative amount in cents")
    row["amount"] = amount
    try:
        paid_at = datetime.fromisoformat(values["paid_at"])
    except ValueError:
        return {}, (BAD_TYPE, f"paid_at={values['paid_at']!r} is not an ISO 8601 timestamp")
    if paid_at.tzinfo is None:
        return {}, (BAD_VALUE, f"paid_at={values['paid_at']!r} has no time zone")
    row["paid_at"] = paid_at
    currency = values["currency"].strip()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        return {}, (BAD_VALUE, f"currency={currency!r} is not an ISO 4217 code")
    row["currency"] = currency
    row["method"] = values["method"].strip()
    return row, None


def validate(
    files: Iterable[tuple[LandingFile, str]],
    known_orders: Callable[[set[int]], set[int]],
) -> ValidatedRows:
    """Split the lines of `files` (file, text) into good and rejected rows.

    `known_orders` answers which of a set of order ids exist in the shop; payments for other
    ids are rejected. A payment id on two valid lines keeps the first and rejects the second;
    lines rejected for another reason never count as the first (a garbled line must not push
    out the good line it resembles).
    """
    result = ValidatedRows()
    candidates: list[tuple[LandingFile, int, str, dict]] = []
    for file, text in files:
        lines = text.splitlines()
        if not lines:
            continue
        header = [h.strip() for h in next(csv.reader([lines[0]]))]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        for number, raw in enumerate(lines[1:], start=2):
            if not raw.strip():
                continue
            if missing:
                result.reject(file, number, BAD_HEADER, f"header lacks {', '.join(missing)}", raw)
                continue
            fields = next(csv.reader([raw]))
            if len(fields) != len(header):
                detail = f"expected {len(header)} fields, got {len(fields)} (truncated line?)"
                result.reject(file, number, WRONG_FIELD_COUNT, detail, raw)
                continue
            values = dict(zip(header, fields, strict=True))
            row, problem = _parse_row(values)
            if problem:
                result.reject(file, number, *problem, raw)
                continue
            extras = {k: v for k, v in values.items() if k not in REQUIRED_COLUMNS}
            result.extra_columns.update(extras)
            row.update(extras, file_date=file.day, source_file=file.name, source_line=number)
            candidates.append((file, number, raw, row))

    existing = known_orders({row["order_id"] for *_, row in candidates}) if candidates else set()
    first_line_of: dict[int, str] = {}
    for file, number, raw, row in candidates:
        payment_id = row["payment_id"]
        if row["order_id"] not in existing:
            detail = f"order_id {row['order_id']} is not in the shop"
            result.reject(file, number, UNKNOWN_ORDER, detail, raw)
        elif payment_id in first_line_of:
            detail = f"payment_id {payment_id} first seen in {first_line_of[payment_id]}"
            result.reject(file, number, DUPLICATE, detail, raw)
        else:
            first_line_of[payment_id] = f"{file.name}:{number}"
            result.good.append(row)
    result.rejected.sort(key=lambda r: (r["source_file"], r["source_line"]))
    return result
