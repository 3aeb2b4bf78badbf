"""Validation of payment file lines: every line ends up good or rejected with its reason."""

from datetime import date
from decimal import Decimal

from ingestion.defs.payments.files import (
    BAD_HEADER,
    BAD_TYPE,
    BAD_VALUE,
    DUPLICATE,
    MISSING_FIELD,
    UNKNOWN_ORDER,
    WRONG_FIELD_COUNT,
    LandingFile,
    validate,
)

FILE = LandingFile("payments_2026-03-01.csv", "/landing/payments_2026-03-01.csv", date(2026, 3, 1))
HEADER = "payment_id,order_id,amount,currency,method,paid_at\n"
KNOWN_ORDERS = {10, 11, 12}


def known(order_ids: set[int]) -> set[int]:
    return order_ids & KNOWN_ORDERS


def run(body: str, header: str = HEADER):
    return validate([(FILE, header + body)], known)


def test_valid_lines_become_typed_rows_with_their_origin():
    rows = run("1,10,12.50,EUR,card,2026-03-01T10:00:00Z\n")

    assert rows.rejected == []
    [row] = rows.good
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
        "8,12,5.0"  # line 10: cut short
    )

    rows = run(body)

    assert [r["payment_id"] for r in rows.good] == [1]
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
    truncated = next(r for r in rows.rejected if r["source_line"] == 10)
    assert truncated["raw_line"] == "8,12,5.0"
    assert "got 3" in truncated["detail"]


def test_a_garbled_line_never_pushes_out_the_good_line_it_resembles():
    body = (
        "50,999,9.99,EUR,card,2026-03-01T10:00:00Z\n"  # unknown order, same payment id
        "50,10,9.99,EUR,card,2026-03-01T10:00:00Z\n"  # the real payment
    )

    rows = run(body)

    assert [(r["payment_id"], r["order_id"]) for r in rows.good] == [(50, 10)]
    assert [r["reason"] for r in rows.rejected] == [UNKNOWN_ORDER]


def test_a_header_without_a_required_column_rejects_every_line_of_that_file():
    rows = run("1,10,12.50,EUR,card\n", header="payment_id,order_id,amount,currency,method\n")

    assert rows.good == []
    assert [(r["reason"], r["detail"]) for r in rows.rejected] == [
        (BAD_HEADER, "header lacks paid_at")
    ]


def test_a_column_the_provider_adds_travels_with_the_rows():
    header = "payment_id,order_id,amount,currency,method,paid_at,card_brand\n"

    rows = run("1,10,12.50,EUR,card,2026-03-01T10:00:00Z,visa\n", header=header)

    assert rows.extra_columns == {"card_brand"}
    assert rows.good[0]["card_brand"] == "visa"
