"""Validation of payment file lines: every line ends up good or rejected with its reason."""

from datetime import date
from decimal import Decimal

import pytest

from ingestion.defs.payments.files import (
    BAD_ENCODING,
    BAD_HEADER,
    BAD_QUOTING,
    BAD_TYPE,
    BAD_VALUE,
    DUPLICATE,
    MISSING_FIELD,
    OUT_OF_RANGE,
    TRUNCATED,
    UNKNOWN_ORDER,
    WRONG_FIELD_COUNT,
    LandingFile,
    parse_name,
    validate,
)

FILE = LandingFile("payments_2026-03-01.csv", "/landing/payments_2026-03-01.csv", date(2026, 3, 1))
HEADER = "payment_id,order_id,amount,currency,method,paid_at\n"
KNOWN_ORDERS = {10, 11, 12}


def known(order_ids: set[int]) -> set[int]:
    return order_ids & KNOWN_ORDERS


def run(body: str | bytes, header: str | bytes = HEADER, loaded_elsewhere=lambda ids: {}):
    data = (header if isinstance(header, bytes) else header.encode()) + (
        body if isinstance(body, bytes) else body.encode()
    )
    return validate([(FILE, data)], known, loaded_elsewhere)


def reasons(rows) -> dict[int, str]:
    return {r["source_line"]: r["reason"] for r in rows.rejected}


def test_valid_lines_become_typed_rows_with_their_origin():
    rows = run("1,10,12.50,EUR,card,2026-03-01T10:00:00Z\n")

    assert rows.rejected == []
    [row] = rows.good_rows()
    assert row["payment_id"] == 1
    assert row["order_id"] == 10
    assert row["amount"] == Decimal("12.50")
    assert row["paid_at"].isoformat() == "2026-03-01T10:00:00+00:00"
    assert (row["file_date"], row["source_file"], row["source_line"]) == (FILE.day, FILE.name, 2)


def test_each_kind_of_malformed_line_is_rejected_with_reason_and_line():
    body = (
        "1,10,12.50,EUR,card,2026-03-01T10:00:00Z\n"  # line 2: good
        "2,11,12,50x,EUR,card,2026-03-01T10:00:00Z\n"  # line 3: comma splits the amount
        "3,,9.99,EUR,card,2026-03-01T10:00:00Z\n"  # line 4: order_id missing
        "4,11,abc,EUR,card,2026-03-01T10:00:00Z\n"  # line 5: amount not a number
        "5,999,9.99,EUR,card,2026-03-01T10:00:00Z\n"  # line 6: order not in the shop
        "6,12,9.999,EUR,card,2026-03-01T10:00:00Z\n"  # line 7: sub-cent amount
        "7,12,9.99,EUR,card,yesterday\n"  # line 8: not a timestamp
        "1,12,5.00,EUR,card,2026-03-01T11:00:00Z\n"  # line 9: payment id reused
        "8,12,5.0\n"  # line 10: a short line (ends with a newline, so not a cut transfer)
    )

    rows = run(body)

    assert [r["payment_id"] for r in rows.good_rows()] == [1]
    reasons = {r["source_line"]: r["reason"] for r in rows.rejected}
    assert reasons == {
        3: WRONG_FIELD_COUNT,
        4: MISSING_FIELD,
        5: BAD_TYPE,
        6: UNKNOWN_ORDER,
        7: BAD_VALUE,
        8: BAD_TYPE,
        9: DUPLICATE,
        10: WRONG_FIELD_COUNT,
    }
    assert rows.rejected_by_reason()[WRONG_FIELD_COUNT] == 2
    short = next(r for r in rows.rejected if r["source_line"] == 10)
    assert short["raw_line"] == "8,12,5.0"
    assert "got 3" in short["detail"]


def test_a_garbled_line_never_pushes_out_the_good_line_it_resembles():
    body = (
        "50,999,9.99,EUR,card,2026-03-01T10:00:00Z\n"  # unknown order, same payment id
        "50,10,9.99,EUR,card,2026-03-01T10:00:00Z\n"  # the real payment
    )

    rows = run(body)

    assert [(r["payment_id"], r["order_id"]) for r in rows.good_rows()] == [(50, 10)]
    assert [r["reason"] for r in rows.rejected] == [UNKNOWN_ORDER]


def test_a_header_without_a_required_column_rejects_every_line_of_that_file():
    rows = run("1,10,12.50,EUR,card\n", header="payment_id,order_id,amount,currency,method\n")

    assert rows.good_rows() == []
    assert [(r["reason"], r["detail"]) for r in rows.rejected] == [
        (BAD_HEADER, "header lacks paid_at")
    ]


def test_a_column_the_provider_adds_travels_with_the_rows():
    header = "payment_id,order_id,amount,currency,method,paid_at,card_brand\n"

    rows = run("1,10,12.50,EUR,card,2026-03-01T10:00:00Z,visa\n", header=header)

    assert rows.extra_columns == {"card_brand"}
    assert rows.good_rows()[0]["card_brand"] == "visa"


# -- the delivery contract, class by class (docs/payment-files.md) ----------------------------

GOOD = "1,10,104.68,EUR,card,2026-03-01T10:00:00Z\n"


def test_a_last_line_cut_inside_a_field_is_rejected_as_truncated_never_loaded_short():
    rows = run(GOOD + "2,11,104.6")  # the transfer stopped inside the amount 104.68

    assert [r["payment_id"] for r in rows.good_rows()] == [1]
    assert reasons(rows) == {3: TRUNCATED}
    assert "cut in transfer" in rows.rejected[0]["detail"]
    assert rows.rejected[0]["raw_line"] == "2,11,104.6"


def test_a_complete_last_line_without_a_newline_is_still_rejected_as_truncated():
    # A cut at a field boundary parses as a valid row: only the missing line end tells.
    rows = run(GOOD + "2,11,104,EUR,card,2026-03-01T10:00:00Z")

    assert [r["payment_id"] for r in rows.good_rows()] == [1]
    assert reasons(rows) == {3: TRUNCATED}


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        ("9223372036854775808,10,1.00,EUR,card,2026-03-01T10:00:00Z", "payment_id="),
        ("0,10,1.00,EUR,card,2026-03-01T10:00:00Z", "payment_id="),
        ("1,-10,1.00,EUR,card,2026-03-01T10:00:00Z", "order_id="),
        ("1,10,12345678901234567890.00,EUR,card,2026-03-01T10:00:00Z", "amount="),
        ("1,10,10000000000,EUR,card,2026-03-01T10:00:00Z", "amount="),
        ("1,10,1.00,EUR," + "x" * 65 + ",2026-03-01T10:00:00Z", "method is 65 characters"),
        ("1,10,1.00,EUR,card,9999-12-31T23:59:59-05:00", "paid_at="),
    ],
)
def test_a_value_beyond_its_columns_range_is_a_rejected_row_not_a_failed_day(line, detail):
    rows = run(GOOD + line + "\n")

    assert [r["payment_id"] for r in rows.good_rows()] == [1]
    assert reasons(rows) == {3: OUT_OF_RANGE}
    assert rows.rejected[0]["detail"].startswith(detail)


def test_the_widest_amount_the_column_holds_is_accepted():
    rows = run("1,10,9999999999.99,EUR,card,2026-03-01T10:00:00Z\n")

    assert rows.rejected == []
    assert rows.good_rows()[0]["amount"] == Decimal("9999999999.99")


@pytest.mark.parametrize("text", ["1e3", "NaN", "Infinity", "1_000", " 12,5"])
def test_numbers_in_forms_python_accepts_but_the_contract_does_not_are_rejected(text):
    rows = run(f'1,10,"{text}",EUR,card,2026-03-01T10:00:00Z\n')

    assert rows.good_rows() == []
    assert [r["reason"] for r in rows.rejected] == [BAD_TYPE]


def test_a_byte_order_mark_is_accepted():
    rows = run(GOOD, header=b"\xef\xbb\xbf" + HEADER.encode())

    assert rows.rejected == []
    assert [r["payment_id"] for r in rows.good_rows()] == [1]


def test_a_line_that_is_not_utf8_is_rejected_with_the_byte_and_kept_readable():
    latin1 = "2,11,5.00,EUR,carte bancaire é,2026-03-01T10:00:00Z\n".encode("latin-1")

    rows = run(GOOD.encode() + latin1)

    assert [r["payment_id"] for r in rows.good_rows()] == [1]
    [rejected] = rows.rejected
    assert rejected["reason"] == BAD_ENCODING
    assert "byte 0xe9" in rejected["detail"]
    assert "\\xe9" in rejected["raw_line"]
    assert "\ufffd" not in str(rows.good_rows()) + str(rows.rejected)


def test_a_header_that_is_not_utf8_rejects_every_line_of_the_file():
    rows = run(GOOD, header="payment_id,order_id,amount,currency,méthode,method,paid_at\n".encode(
        "latin-1"
    ))  # fmt: skip

    assert rows.good_rows() == []
    assert [(r["reason"], "not UTF-8" in r["detail"]) for r in rows.rejected] == [
        (BAD_HEADER, True)
    ]


def test_trailing_delimiters_on_the_header_and_rows_are_tolerated():
    rows = run(GOOD.replace("\n", ",\n") + "2,11,5.00,EUR,card,2026-03-01T10:00:00Z,,\n",
               header=HEADER.replace("\n", ",\n"))  # fmt: skip

    assert rows.rejected == []
    assert [r["payment_id"] for r in rows.good_rows()] == [1, 2]
    assert rows.extra_columns == set()


def test_a_value_in_a_column_without_a_header_name_is_a_wrong_field_count():
    rows = run("1,10,1.00,EUR,card,2026-03-01T10:00:00Z,surprise\n")

    assert reasons(rows) == {2: WRONG_FIELD_COUNT}


@pytest.mark.parametrize("column", ["file_date", "source_file", "source_line", "_dlt_id"])
def test_a_provider_column_named_like_one_the_pipeline_adds_is_refused(column):
    rows = run("1,10,1.00,EUR,card,2026-03-01T10:00:00Z,x\n", header=HEADER.replace(
        "\n", f",{column}\n"
    ))  # fmt: skip

    assert rows.good_rows() == []
    [rejected] = rows.rejected
    assert rejected["reason"] == BAD_HEADER
    assert f"{column!r} is reserved" in rejected["detail"]


@pytest.mark.parametrize(
    ("extra", "detail"),
    [("Card Brand", "not a valid column name"), ("amount", "names 'amount' twice")],
)
def test_a_header_with_an_unusable_column_name_rejects_the_file_with_the_reason(extra, detail):
    rows = run("1,10,1.00,EUR,card,2026-03-01T10:00:00Z,x\n", header=HEADER.replace(
        "\n", f",{extra}\n"
    ))  # fmt: skip

    assert rows.good_rows() == []
    assert [r["reason"] for r in rows.rejected] == [BAD_HEADER]
    assert detail in rows.rejected[0]["detail"]


def test_nul_characters_and_unclosed_quotes_are_rejected_rows():
    rows = run(GOOD + "2,11,5.00,EUR,ca\x00rd,2026-03-01T10:00:00Z\n"
               + '3,11,5.00,EUR,"card,2026-03-01T10:00:00Z\n')  # fmt: skip

    assert [r["payment_id"] for r in rows.good_rows()] == [1]
    assert reasons(rows) == {3: BAD_VALUE, 4: BAD_QUOTING}
    assert "\x00" not in rows.rejected[0]["raw_line"]


def test_a_unicode_line_separator_inside_a_field_does_not_split_the_line():
    rows = run("1,10,1.00,EUR,card\u2028debit,2026-03-01T10:00:00Z\n")

    assert rows.rejected == []
    assert rows.good_rows()[0]["method"] == "card\u2028debit"


def test_a_payment_id_already_loaded_for_another_day_is_rejected_naming_where():
    rows = run(GOOD, loaded_elsewhere=lambda ids: {1: "payments_2026-02-27.csv:5 (already loaded)"})

    assert rows.good_rows() == []
    [rejected] = rows.rejected
    assert rejected["reason"] == DUPLICATE
    assert "payments_2026-02-27.csv:5" in rejected["detail"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("payments_2026-03-01.csv", (date(2026, 3, 1), 0)),
        ("payments_2026-03-01_resend.csv", (date(2026, 3, 1), 1)),
        ("payments_2026-03-01_resend-2.csv", (date(2026, 3, 1), 2)),
        ("payments_2026-03-01_resend-12.csv", (date(2026, 3, 1), 12)),
        ("payments_2026-02-30.csv", "2026-02-30 is not a calendar day"),
        ("payments_2026-13-01_resend.csv", "2026-13-01 is not a calendar day"),
        ("payments_2026-03-01_resend-1.csv", "not a payment file name"),
        ("payments_2026-03-01_part2.csv", "not a payment file name"),
        ("payments_20260301.csv", "not a payment file name"),
        ("notes.txt", "not a payment file name"),
    ],
)
def test_file_names_follow_the_contract(name, expected):
    parsed = parse_name(name)

    if isinstance(expected, str):
        assert isinstance(parsed, str)
        assert parsed.startswith(expected)
    else:
        assert parsed == expected


def test_a_line_in_plain_form_and_the_same_line_quoted_and_spaced_give_the_same_row():
    plain = run("1,10,12.50,EUR,card,2026-03-01T10:00:00.5+01:00\n").good_rows()
    quoted = run('"1", 10 ,"12.50",EUR, card ,2026-03-01T10:00:00.500000+01:00\n').good_rows()

    assert plain == quoted
    assert plain[0]["paid_at"].isoformat() == "2026-03-01T09:00:00.500000+00:00"


def test_the_first_line_of_a_payment_id_wins_whichever_way_each_line_is_read():
    rows = run(
        '"7",10,1.00,EUR,card,2026-03-01T10:00:00Z\n' + "7,11,2.00,EUR,card,2026-03-01T10:00:00Z\n"
    )

    assert [(r["payment_id"], r["order_id"]) for r in rows.good_rows()] == [(7, 10)]
    assert [(r["source_line"], r["reason"]) for r in rows.rejected] == [(3, DUPLICATE)]
    assert "payments_2026-03-01.csv:2" in rows.rejected[0]["detail"]


def test_a_file_for_the_30th_of_february_has_its_lines_rejected_not_its_day_failed():
    rows = run(GOOD + "2,11,5.00,EUR,card,2026-02-30T10:00:00Z\n")

    assert [r["payment_id"] for r in rows.good_rows()] == [1]
    assert reasons(rows) == {3: BAD_TYPE}


@pytest.mark.parametrize(
    "line",
    [
        "1,10," + "1" * 27 + ",EUR,card,2026-03-01T10:00:00Z",  # beyond the decimal context
        "1" * 4301 + ",10,1.00,EUR,card,2026-03-01T10:00:00Z",  # beyond int()'s digit limit
        "1,10,1.00,EUR," + "m" * 131_073 + ",2026-03-01T10:00:00Z",  # beyond csv's field limit
    ],
    ids=["amount-27-digits", "id-4301-digits", "field-over-csv-limit"],
)
def test_numbers_and_fields_too_long_for_the_parsers_are_rejected_rows_not_a_crash(line):
    rows = run(GOOD + line + "\n")

    assert [r["payment_id"] for r in rows.good_rows()] == [1]
    assert reasons(rows) == {3: OUT_OF_RANGE}


def test_an_id_padded_with_thousands_of_zeros_is_read_as_its_value():
    rows = run(GOOD + "0" * 4300 + "2,10,1.00,EUR,card,2026-03-01T10:00:00Z\n")

    assert [r["payment_id"] for r in rows.good_rows()] == [1, 2]


@pytest.mark.parametrize(
    "stamp",
    ["2026-03-01x10:00:00Z", "2026-03-01T10:00:00+05:45:30", "2026-03-01T10:00:00 +05:45",
     "2026-03-01T10:00Z"],
)  # fmt: skip
def test_timestamps_python_reads_but_iso_8601_does_not_allow_are_rejected(stamp):
    rows = run(f"1,10,1.00,EUR,card,{stamp}\n")

    assert rows.good_rows() == []
    assert [r["reason"] for r in rows.rejected] == [BAD_TYPE]


def test_only_spaces_and_tabs_are_padding_other_characters_are_data():
    rows = run("\x1f1\x1f,10,1.00,EUR,card,2026-03-01T10:00:00Z\n"
               "2,10,1.00,EUR,\tcard\xa0,2026-03-01T10:00:00Z\n"
               "\x0c\n")  # fmt: skip

    assert reasons(rows) == {2: BAD_TYPE, 4: WRONG_FIELD_COUNT}
    assert [r["method"] for r in rows.good_rows()] == ["card\xa0"]


def test_a_very_long_rejected_line_is_kept_and_marked_as_cut():
    line = "1,10,1.00,EUR,card,2026-03-01T10:00:00Z," + "x" * 200_000

    [rejected] = run(line + "\n").rejected

    assert rejected["raw_line"].startswith(line[:1000])
    assert rejected["raw_line"].endswith("[cut: 200,040 characters; the file has the line]")


def test_an_extra_column_name_dlt_would_rename_is_refused():
    rows = run("1,10,1.00,EUR,card,2026-03-01T10:00:00Z,x\n", header=HEADER.replace(
        "\n", ",note_\n"
    ))  # fmt: skip

    assert [r["reason"] for r in rows.rejected] == [BAD_HEADER]


def test_a_header_cut_before_its_line_end_makes_the_file_unusable():
    rows = run("", header=HEADER.rstrip("\n"))

    assert rows.good_rows() == []
    assert "cut in transfer" in rows.unusable[FILE.name]


def test_a_name_with_a_line_end_after_csv_is_not_a_payment_file():
    assert isinstance(parse_name("payments_2026-03-01.csv\n"), str)
