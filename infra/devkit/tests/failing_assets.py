"""Two assets for `make run`'s summary: one loads, the other's load fails."""

import dagster as dg


@dg.asset
def loaded_table() -> int:
    """A table that loads."""
    return 1


@dg.asset
def broken_table() -> int:
    """A table whose load fails."""
    raise RuntimeError("the source is unreachable")


defs = dg.Definitions(assets=[loaded_table, broken_table])
