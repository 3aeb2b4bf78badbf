"""The payment partitions: one per business day, from the first day the provider delivered.

The first day is deployment configuration (PAYMENTS_FIRST_DAY) rather than a constant: a
partition set that starts long before the first file makes "backfill missing" ask for every
day in between, none of which can ever load. Partitions are part of the definitions, so the
variable is read when the code location loads (dg.EnvVar only reaches resources and config),
and a bad value stops the load with a message naming it.
"""

import os
import re
from collections.abc import Mapping
from datetime import date

import dagster as dg

FIRST_DAY_VARIABLE = "PAYMENTS_FIRST_DAY"
# The day the demo provider's contract starts; docs/payment-files.md tells deployments to set
# their own.
DEFAULT_FIRST_DAY = "2025-01-01"
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def first_day(environ: Mapping[str, str] = os.environ) -> date:
    """The first payment day, from PAYMENTS_FIRST_DAY (YYYY-MM-DD) or the default."""
    text = environ.get(FIRST_DAY_VARIABLE, "").strip() or DEFAULT_FIRST_DAY
    try:
        # Python 3.11 also reads 20250101 and 2025-W01-1; the variable takes one form.
        if not DAY.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise dg.DagsterInvalidDefinitionError(
            f"{FIRST_DAY_VARIABLE}={text!r} is not a day: expected YYYY-MM-DD, the first day "
            f"payment files exist for (unset: {DEFAULT_FIRST_DAY})"
        ) from None


PAYMENTS_PARTITIONS = dg.DailyPartitionsDefinition(start_date=first_day().isoformat())
