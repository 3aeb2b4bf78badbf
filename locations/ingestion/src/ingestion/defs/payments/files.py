"""The payment provider's files: finding them in the landing area and validating their rows.

This module enforces the delivery contract in docs/payment-files.md:

- Names: `payments_YYYY-MM-DD.csv` is a day's delivery; `payments_YYYY-MM-DD_resend.csv`,
  then `_resend-2`, `_resend-3`, ... are its re-deliveries. Each delivery is the whole day, so
  the latest one replaces the day. Any other visible name is reported and skipped. Producers
  write to a hidden temporary name and rename; hidden files are never read.
- Content: UTF-8 (a byte-order mark is accepted), a header line, one record per line ending in
  a newline. A last line without one was cut in transfer and is rejected as truncated.
- Every line ends up a good row or a rejected one. A rejected line keeps its file, line
  number, reason code, detail and raw text, so nothing is lost and every rejection can be
  explained. Columns beyond the required ones are carried through as text, so a provider that
  adds a column adds it to raw.payments (dlt evolves the table) instead of breaking the load.
"""

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import fsspec

if TYPE_CHECKING:
    import pyarrow as pa

# The N of `_resend-N` starts at 2: `_resend` is the first re-delivery.
FILE_NAME = re.compile(
    r"^payments_(?P<day>\d{4}-\d{2}-\d{2})(?P<resend>_resend(?:-(?P<n>[2-9]|[1-9][0-9]+))?)?\.csv$"
)
EXPECTED_NAME = "payments_YYYY-MM-DD.csv, or payments_YYYY-MM-DD_resend[-N].csv to re-deliver"
REQUIRED_COLUMNS = ("payment_id", "order_id", "amount", "currency", "method", "paid_at")
# Columns the pipeline adds to every row; dlt reserves its own `_dlt` prefix.
RESERVED_COLUMNS = ("file_date", "source_file", "source_line")
RESERVED_PREFIX = "_dlt"
# Extra columns become raw.payments columns as they are: names dlt's naming convention keeps
# unchanged (it rewrites a trailing underscore) and PostgreSQL's identifier length takes.
EXTRA_COLUMN_NAME = re.compile(r"[a-z](?:[a-z0-9_]{0,61}[a-z0-9])?")
# A rejected line's text is kept up to this length, then marked as cut; the file itself stays
# in the landing area with every byte.
MAX_RAW_LINE = 100_000
# Spaces and tabs around a field or a header name are not data; any other character is.
PADDING = " \t"
BOM = b"\xef\xbb\xbf"

# The ranges of raw.payments' columns: a value outside them is a rejected row, never a failed
# load. Amounts are numeric(12,2); ids are positive bigints.
AMOUNT_PRECISION, AMOUNT_SCALE = 12, 2
MAX_AMOUNT = Decimal(10) ** (AMOUNT_PRECISION - AMOUNT_SCALE) - Decimal("0.01")
MAX_ID = 2**63 - 1
MAX_TEXT = {"method": 64}
MAX_EXTRA_TEXT = 1000
INTEGER = re.compile(r"-?[0-9]+")
DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# ISO 8601 / RFC 3339 date and time, "T" or a space between them, an optional fraction (beyond
# microseconds it is truncated: the column holds microseconds) and an offset of hours and
# minutes or Z. Python's fromisoformat alone would take other separators and offsets with
# seconds.
TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)
CURRENCY = re.compile(r"[A-Z]{3}")

# Reason codes of rejected rows.
WRONG_FIELD_COUNT = "wrong_field_count"
MISSING_FIELD = "missing_field"
BAD_TYPE = "bad_type"
BAD_VALUE = "bad_value"
OUT_OF_RANGE = "out_of_range"
BAD_ENCODING = "bad_encoding"
BAD_QUOTING = "bad_quoting"
TRUNCATED = "truncated_line"
DUPLICATE = "duplicate_payment_id"
UNKNOWN_ORDER = "unknown_order"
BAD_HEADER = "bad_header"


@dataclass(frozen=True)
class LandingFile:
    """A payment file in the landing area: its day, its place among the day's deliveries (0 for
    the first, N for the N-th re-delivery), its `version`, which changes when the file is
    replaced (size and modification time, or the object store's ETag), and when it was last
    written (seconds since the epoch; None where the store does not say)."""

    name: str
    path: str
    day: date
    version: str = ""
    delivery: int = 0
    size: int | None = None
    modified: float | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A visible file in the landing area that is not a payment file by the contract."""

    name: str
    reason: str
    version: str = ""
    modified: float | None = None


@dataclass
class Landing:
    files: list[LandingFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def latest_by_day(self) -> dict[date, LandingFile]:
        """Each day's latest delivery, which is the day's content."""
        latest: dict[date, LandingFile] = {}
        for file in self.files:
            latest[file.day] = file
        return latest


def parse_name(name: str) -> tuple[date, int] | str:
    """(day, delivery number) of a payment file name, or why the name is not one."""
    match = FILE_NAME.fullmatch(name)
    if not match:
        return f"not a payment file name (expected {EXPECTED_NAME})"
    try:
        day = date.fromisoformat(match["day"])
    except ValueError:
        return f"{match['day']} is not a calendar day"
    if match["resend"] is None:
        return day, 0
    return day, int(match["n"] or 1)


def list_landing(url: str) -> Landing:
    """Every payment file in the landing area (any fsspec URL), in delivery order, and every
    other visible file with the reason it is skipped."""
    fs, root = fsspec.core.url_to_fs(url)
    if not fs.exists(root):
        raise FileNotFoundError(f"payment landing area {url!r} does not exist")
    landing = Landing()
    for info in fs.ls(root, detail=True):
        path = info["name"]
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("."):
            continue
        if info.get("type") != "file":
            if FILE_NAME.fullmatch(name):
                landing.skipped.append(SkippedFile(name, "a folder, not a file"))
            continue
        stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
        size = info.get("size")
        version = f"{size if size is not None else ''}:{stamp}"
        modified = modification_time(info)
        parsed = parse_name(name)
        if isinstance(parsed, str):
            landing.skipped.append(SkippedFile(name, parsed, version, modified))
            continue
        landing.files.append(LandingFile(name, path, parsed[0], version, parsed[1], size, modified))
    landing.files.sort(key=lambda f: (f.day, f.delivery))
    landing.skipped.sort(key=lambda s: s.name)
    return landing


def modification_time(info: dict) -> float | None:
    """When a listed file was last written: a local or SFTP mtime, S3's LastModified, GCS's
    updated time."""
    stamp = info.get("mtime") or info.get("LastModified") or info.get("updated")
    if isinstance(stamp, str):
        try:
            stamp = datetime.fromisoformat(stamp)
        except ValueError:
            return None
    if isinstance(stamp, datetime):
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return float(stamp) if isinstance(stamp, int | float) else None


def read_bytes(url: str, file: LandingFile) -> bytes:
    fs, _ = fsspec.core.url_to_fs(url)
    with fs.open(file.path, "rb") as handle:
        return handle.read()


@dataclass
class ValidatedRows:
    """Good rows (an Arrow table in raw.payments' shape, ordered by file and line) and rejected
    rows of one or more files."""

    good: "pa.Table | None" = None
    rejected: list[dict] = field(default_factory=list)
    extra_columns: set[str] = field(default_factory=set)
    # file name -> number of data lines (blank lines not counted)
    lines: dict[str, int] = field(default_factory=dict)
    # file name -> why a file without data lines is not a delivery (no or a broken header)
    unusable: dict[str, str] = field(default_factory=dict)

    def reject(self, file: LandingFile, line: int, reason: str, detail: str, raw: str) -> None:
        self.rejected.append({
            "file_date": file.day, "source_file": file.name, "source_line": line,
            "reason": reason, "detail": detail,
            "raw_line": _kept(raw),
        })  # fmt: skip

    def good_rows(self) -> list[dict]:
        return self.good.to_pylist() if self.good is not None else []

    def rejected_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rejected:
            counts[row["reason"]] = counts.get(row["reason"], 0) + 1
        return dict(sorted(counts.items()))


def _kept(raw: str) -> str:
    """A rejected line's text as raw_line keeps it: PostgreSQL text cannot hold NUL, so it is
    written as \\x00 (as bytes that are not UTF-8 are); a very long line is cut and marked."""
    text = raw.replace("\x00", "\\x00")
    if len(text) <= MAX_RAW_LINE:
        return text
    return f"{text[:MAX_RAW_LINE]}... [cut: {len(text):,} characters; the file has the line]"


def _lines(data: bytes) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without its line end, ended by a newline) of each line. Split on
    `\\n` only: a Unicode line separator inside a field is data, not a line end."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    lines = data.split(b"\n")
    complete = lines[-1] == b""
    if complete:
        lines.pop()
    for number, line in enumerate(lines, start=1):
        ended = complete or number < len(lines)
        yield number, line.removesuffix(b"\r"), ended


def _header_problem(names: list[str]) -> str | None:
    """Why a header cannot be used, or None."""
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        return f"header lacks {', '.join(missing)}"
    for position, name in enumerate(names, start=1):
        if not name:
            return f"column {position} of the header has no name"
        if names.count(name) > 1:
            return f"header names {name!r} twice"
        if name in RESERVED_COLUMNS or name.startswith(RESERVED_PREFIX):
            return f"column {name!r} is reserved: the pipeline adds it to every row; rename it"
        if name not in REQUIRED_COLUMNS and not EXTRA_COLUMN_NAME.fullmatch(name):
            return (
                f"column {name!r} is not a valid column name (lower-case letters, digits and "
                "underscores, starting with a letter, at most 63 characters)"
            )
    return None


def _header(raw: bytes) -> tuple[list[str], str | None]:
    """Column names of a header line (trailing delimiters dropped) or why it is unusable."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return [], f"header is not UTF-8 ({_byte_error(error)})"
    try:
        names = [n.strip(PADDING) for n in next(csv.reader([text], strict=True))]
    except (csv.Error, StopIteration) as error:
        return [], f"header cannot be parsed: {error}"
    while names and not names[-1]:
        names.pop()
    return names, _header_problem(names)


def _byte_error(error: UnicodeDecodeError) -> str:
    return f"byte 0x{error.object[error.start]:02x} at position {error.start + 1}"


def _identifier(column: str, text: str) -> tuple[int | None, tuple[str, str] | None]:
    if not INTEGER.fullmatch(text):
        return None, (BAD_TYPE, f"{column}={text!r} is not an integer")
    digits = text.lstrip("-").lstrip("0") or "0"
    if len(digits) > len(str(MAX_ID)):
        # Also keeps int() clear of Python's limit on the digits it converts.
        return None, (OUT_OF_RANGE, f"{column}={text[:40]!r}... is not between 1 and {MAX_ID}")
    value = -int(digits) if text.startswith("-") else int(digits)
    if not 1 <= value <= MAX_ID:
        return None, (OUT_OF_RANGE, f"{column}={text!r} is not between 1 and {MAX_ID}")
    return value, None


def _parse_row(values: dict[str, str]) -> tuple[dict, tuple[str, str] | None]:
    """Typed values of one row, or the first (reason, detail) that makes it invalid."""
    values = {k: v.strip(PADDING) for k, v in values.items()}
    for column, value in values.items():
        if "\x00" in value:
            return {}, (BAD_VALUE, f"{column} contains a NUL character")
    for column in REQUIRED_COLUMNS:
        if not values[column]:
            return {}, (MISSING_FIELD, f"{column} is empty")
    row: dict = {}
    for column in ("payment_id", "order_id"):
        row[column], problem = _identifier(column, values[column])
        if problem:
            return {}, problem
    text = values["amount"]
    if not DECIMAL.fullmatch(text):
        return {}, (BAD_TYPE, f"amount={text!r} is not a decimal number")
    amount = Decimal(text)
    if amount < 0:
        return {}, (BAD_VALUE, f"amount={text!r} is not a non-negative amount in cents")
    if amount > MAX_AMOUNT:
        # Before quantize(), which fails on more digits than the decimal context holds.
        return {}, (OUT_OF_RANGE, f"amount={text[:40]!r} exceeds {MAX_AMOUNT}")
    if amount != amount.quantize(Decimal(1).scaleb(-AMOUNT_SCALE)):
        return {}, (BAD_VALUE, f"amount={text!r} is not a non-negative amount in cents")
    row["amount"] = amount.quantize(Decimal(1).scaleb(-AMOUNT_SCALE))
    try:
        if not TIMESTAMP.fullmatch(values["paid_at"]):
            raise ValueError(values["paid_at"])
        paid_at = datetime.fromisoformat(values["paid_at"])
    except ValueError:
        return {}, (BAD_TYPE, f"paid_at={values['paid_at']!r} is not an ISO 8601 timestamp")
    if paid_at.tzinfo is None:
        return {}, (BAD_VALUE, f"paid_at={values['paid_at']!r} has no time zone")
    try:
        row["paid_at"] = paid_at.astimezone(UTC)
    except OverflowError:
        return {}, (OUT_OF_RANGE, f"paid_at={values['paid_at']!r} is outside the calendar")
    if not CURRENCY.fullmatch(values["currency"]):
        return {}, (BAD_VALUE, f"currency={values['currency']!r} is not an ISO 4217 code")
    row["currency"] = values["currency"]
    row["method"] = values["method"]
    for column, value in values.items():
        limit = MAX_TEXT.get(column, MAX_EXTRA_TEXT if column not in REQUIRED_COLUMNS else None)
        if limit is not None and len(value) > limit:
            return {}, (OUT_OF_RANGE, f"{column} is {len(value)} characters, at most {limit}")
    return row, None


def _check_line(
    file: LandingFile,
    number: int,
    raw_bytes: bytes,
    ended: bool,
    header: list[str],
    result: ValidatedRows,
) -> dict | None:
    """The typed row of one data line that passes the row-level rules, or None (the line was
    blank, or it is rejected into `result`)."""
    raw = raw_bytes.decode("utf-8", errors="backslashreplace")
    if not raw.strip(PADDING):
        return None
    result.lines[file.name] += 1
    if not ended:
        detail = "the last line has no line end: the file was cut in transfer"
        result.reject(file, number, TRUNCATED, detail, raw)
        return None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as error:
        result.reject(file, number, BAD_ENCODING, f"{_byte_error(error)} is not UTF-8", raw)
        return None
    try:
        fields = next(csv.reader([text], strict=True))
    except csv.Error as error:
        if "field limit" in str(error):
            detail = f"a field is longer than {csv.field_size_limit():,} characters"
            result.reject(file, number, OUT_OF_RANGE, detail, raw)
        else:
            result.reject(file, number, BAD_QUOTING, f"cannot be parsed as CSV: {error}", raw)
        return None
    # Fields past the header's are tolerated when empty: a trailing delimiter.
    if len(fields) < len(header) or any(f.strip(PADDING) for f in fields[len(header) :]):
        detail = f"expected {len(header)} fields, got {len(fields)} (truncated line?)"
        result.reject(file, number, WRONG_FIELD_COUNT, detail, raw)
        return None
    values = dict(zip(header, fields[: len(header)], strict=True))
    row, problem = _parse_row(values)
    if problem:
        result.reject(file, number, *problem, raw)
        return None
    extras = {k: v.strip(PADDING) for k, v in values.items() if k not in REQUIRED_COLUMNS}
    result.extra_columns.update(extras)
    row.update(extras, file_date=file.day, source_file=file.name, source_line=number)
    row[RAW] = raw
    return row


# The fast path: lines in the plain form almost every line has (ASCII, unquoted, no spaces
# around delimiters, canonical numbers and timestamps) are checked and typed column-wise with
# Arrow, at C speed. A line in that form is valid by the rules of `_parse_row` and gets the
# same values; every other line goes through `_check_line`, which gives the precise reason.
FAST_REJECT = r'["\x00-\x1f]|(^|,) | (,|$)'
FAST_ID = r"^[1-9][0-9]{0,17}$"
FAST_AMOUNT = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
FAST_CURRENCY = r"^[A-Z]{3}$"
FAST_PAID_AT = (
    r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]"
    r":[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$"
)
RAW = "_raw_line"  # the line's text, kept until the row is known to be good
GOOD_TYPES = {"payment_id": "int64", "order_id": "int64", "currency": "string",
              "method": "string"}  # fmt: skip


def _fast_rows(
    file: LandingFile, lines: list[str], header: list[str]
) -> tuple["pa.Table", "pa.Array"]:
    """Typed rows of the data lines (numbered from 2) that are in the plain form, and a mask
    over `lines` of the ones taken."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    width = len(header)
    text = pc.replace_substring_regex(pa.array(lines, pa.string()), "\r$", "")
    plain = pc.and_(
        pc.string_is_ascii(text), pc.invert(pc.match_substring_regex(text, FAST_REJECT))
    )
    parts = pc.split_pattern(text, ",")
    plain = pc.and_(plain, pc.equal(pc.list_value_length(parts), width))
    candidates = np.flatnonzero(plain.to_numpy(zero_copy_only=False))
    flat = pc.list_flatten(parts.take(candidates))
    offsets = np.arange(len(candidates), dtype=np.int64) * width
    columns = {name: flat.take(offsets + j) for j, name in enumerate(header)}

    ok = np.ones(len(candidates), dtype=bool)
    for column, pattern in (("payment_id", FAST_ID), ("order_id", FAST_ID),
                            ("amount", FAST_AMOUNT), ("currency", FAST_CURRENCY),
                            ("paid_at", FAST_PAID_AT)):  # fmt: skip
        ok &= pc.match_substring_regex(columns[column], pattern).to_numpy(zero_copy_only=False)
    lengths = {c: pc.binary_length(v).to_numpy(zero_copy_only=False) for c, v in columns.items()}
    ok &= (lengths["method"] >= 1) & (lengths["method"] <= MAX_TEXT["method"])
    for column in header:
        if column not in REQUIRED_COLUMNS:
            ok &= lengths[column] <= MAX_EXTRA_TEXT
    # The pattern lets through days that do not exist (2026-02-30): a day's file holds few
    # distinct dates, so each is checked once.
    days = pc.utf8_slice_codeunits(columns["paid_at"], 0, 10)
    impossible = [d for d in pc.unique(days).to_pylist() if not _is_day(d)]
    if impossible:
        ok &= ~pc.is_in(days, pa.array(impossible)).to_numpy(zero_copy_only=False)

    taken = candidates[ok]
    keep = pa.array(np.flatnonzero(ok))
    table = {
        column: columns[column].take(keep).cast(GOOD_TYPES.get(column, "string"))
        for column in header
    }
    table["amount"] = (
        columns["amount"].take(keep).cast(pa.decimal128(AMOUNT_PRECISION, AMOUNT_SCALE))
    )
    table["paid_at"] = columns["paid_at"].take(keep).cast(pa.timestamp("us", tz="UTC"))
    table["file_date"] = pa.array(np.full(len(taken), np.datetime64(file.day, "D")), pa.date32())
    table["source_file"] = pa.array(np.full(len(taken), file.name), pa.string())
    table["source_line"] = pa.array(taken + 2, pa.int64())
    table[RAW] = text.take(pa.array(taken))
    mask = np.zeros(len(lines), dtype=bool)
    mask[taken] = True
    return pa.table(table), mask


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _file_rows(file: LandingFile, data: bytes, result: ValidatedRows) -> list["pa.Table"]:
    """Tables of the candidate rows of one file (rows that pass the row-level rules; every
    other line is rejected into `result`)."""
    import numpy as np
    import pyarrow as pa

    result.lines[file.name] = 0
    body = data[len(BOM) :] if data.startswith(BOM) else data
    first_end = body.find(b"\n")
    header_line = body if first_end < 0 else body[:first_end]
    if not body.strip():
        result.unusable[file.name] = "it has no header line (nothing but white space)"
        return []
    if first_end < 0:
        result.unusable[file.name] = (
            "its only line, the header, has no line end: the file was cut in transfer"
        )
        return []
    header, header_problem = _header(header_line.removesuffix(b"\r"))
    if header_problem:
        for number, raw_bytes, _ in _lines(data):
            raw = raw_bytes.decode("utf-8", errors="backslashreplace")
            if number > 1 and raw.strip(PADDING):
                result.lines[file.name] += 1
                result.reject(file, number, BAD_HEADER, header_problem, raw)
        if not result.lines[file.name]:
            # No line to quarantine the reason with: the file itself is refused.
            result.unusable[file.name] = header_problem
        return []
    complete = body.endswith(b"\n")
    try:
        texts = body.decode("utf-8").split("\n")[1:]
    except UnicodeDecodeError:
        texts = None  # line by line, so each bad line is named
    tables = []
    slow = []
    if texts is None:
        for number, raw_bytes, ended in _lines(data):
            if number > 1:
                row = _check_line(file, number, raw_bytes, ended, header, result)
                slow.append(row)
    else:
        if complete:
            texts.pop()
        usable = texts if complete else texts[:-1]  # a last line without its end was cut
        fast, taken = _fast_rows(file, usable, header)
        result.lines[file.name] += fast.num_rows
        result.extra_columns.update(c for c in header if c not in REQUIRED_COLUMNS)
        tables.append(fast)
        rest = np.flatnonzero(~taken).tolist() + (
            [len(texts) - 1] if texts and not complete else []
        )
        for i in rest:
            raw_bytes = texts[i].removesuffix("\r").encode()
            ended = complete or i < len(texts) - 1
            slow.append(_check_line(file, i + 2, raw_bytes, ended, header, result))
    slow = [row for row in slow if row is not None]
    if slow:
        tables.append(pa.Table.from_pylist(slow))
    return tables


def validate(
    files: Iterable[tuple[LandingFile, bytes]],
    known_orders: Callable[[set[int]], set[int]],
    loaded_elsewhere: Callable[[set[int]], dict[int, str]] = lambda ids: {},
) -> ValidatedRows:
    """Split the lines of `files` (file, content) into good and rejected rows.

    `known_orders` answers which of a set of order ids exist in the shop; payments for other
    ids are rejected. `loaded_elsewhere` answers which payment ids raw already holds for days
    other than these files' (id -> where), so a payment is never in raw twice and loading one
    day never touches another. A payment id on two valid lines keeps the first and rejects the
    second; lines rejected for another reason never count as the first (a garbled line must not
    push out the good line it resembles).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    result = ValidatedRows()
    tables: list[pa.Table] = []
    for order, (file, data) in enumerate(files):
        for table in _file_rows(file, data, result):
            tables.append(table.append_column("_order", pa.array(np.full(table.num_rows, order))))
    schema = good_schema(result.extra_columns)
    full = schema.append(pa.field(RAW, pa.string())).append(pa.field("_order", pa.int64()))
    candidates = (
        pa.concat_tables([_conform(t, full) for t in tables]) if tables else full.empty_table()
    )
    candidates = candidates.sort_by([("_order", "ascending"), ("source_line", "ascending")])

    order_ids = pc.unique(candidates["order_id"]).to_pylist()
    known = known_orders(set(order_ids)) if order_ids else set()
    unknown = ~pc.is_in(candidates["order_id"], pa.array(sorted(known), pa.int64())).to_numpy(
        zero_copy_only=False
    )
    ids = candidates["payment_id"].to_numpy()
    elsewhere = (
        loaded_elsewhere(set(pc.unique(candidates["payment_id"]).to_pylist())) if len(ids) else {}
    )
    # A payment id's first line among the rows with a known order wins; later ones are
    # duplicates, as is every line of an id raw holds for another day.
    first = np.zeros(len(ids), dtype=bool)
    known_rows = np.flatnonzero(~unknown)
    _, first_of = np.unique(ids[known_rows], return_index=True)
    first[known_rows[first_of]] = True
    if elsewhere:
        first &= ~np.isin(ids, np.fromiter(elsewhere, dtype=np.int64))
    duplicate = ~unknown & ~first
    first_line_of = dict(elsewhere)
    for i in np.flatnonzero(first & np.isin(ids, ids[duplicate])):
        first_line_of[int(ids[i])] = _where(candidates, i)
    for i in np.flatnonzero(unknown | duplicate):
        row = candidates.slice(i, 1).to_pylist()[0]
        file = LandingFile(row["source_file"], "", row["file_date"])
        if unknown[i]:
            detail = f"order_id {row['order_id']} is not in the shop"
            result.reject(file, row["source_line"], UNKNOWN_ORDER, detail, row[RAW])
        else:
            detail = (
                f"payment_id {row['payment_id']} first seen in {first_line_of[row['payment_id']]}"
            )
            result.reject(file, row["source_line"], DUPLICATE, detail, row[RAW])
    result.good = candidates.filter(pa.array(first)).select(schema.names)
    result.rejected.sort(key=lambda r: (r["source_file"], r["source_line"]))
    return result


def _where(table: "pa.Table", i: int) -> str:
    return f"{table['source_file'][i].as_py()}:{table['source_line'][i].as_py()}"


def good_schema(extra_columns: Iterable[str]) -> "pa.Schema":
    """raw.payments' columns: the required ones typed, the provider's extra ones as text."""
    import pyarrow as pa

    schema = pa.schema([
        ("payment_id", pa.int64()),
        ("order_id", pa.int64()),
        ("amount", pa.decimal128(AMOUNT_PRECISION, AMOUNT_SCALE)),
        ("currency", pa.string()),
        ("method", pa.string()),
        ("paid_at", pa.timestamp("us", tz="UTC")),
        ("file_date", pa.date32()),
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
    ])  # fmt: skip
    for name in sorted(extra_columns):
        schema = schema.append(pa.field(name, pa.string()))
    return schema


def _conform(table: "pa.Table", schema: "pa.Schema") -> "pa.Table":
    """`table` with `schema`'s columns in its order: absent ones null, values cast."""
    import pyarrow as pa

    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]  # fmt: skip
    return pa.Table.from_arrays(columns, schema=schema)
