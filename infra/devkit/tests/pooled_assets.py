"""Assets for the `make run` tests: two that share a pool of one slot, as loads of one dlt
pipeline do. `slot_holder` holds the slot until its process ends; `pooled_table` returns."""

import time

import dagster as dg

POOL = "make_run_test"


@dg.asset(pool=POOL)
def slot_holder() -> None:
    """A load that runs until its process is killed."""
    time.sleep(600)


@dg.asset(pool=POOL)
def pooled_table() -> int:
    """A load that takes the slot and returns at once."""
    return 1


defs = dg.Definitions(assets=[pooled_table])
