"""The floor for code-location start times: a code location with one trivial asset and nothing
else. What a location adds on top of this (its libraries, its definitions, reading its state)
is what the start-time benchmark attributes to it.

Kept outside locations/ so no workspace, image or contract test picks it up; the benchmark
starts it with `dagster api grpc -m floor_location -d infra/bench`.
"""

import dagster as dg


@dg.asset(kinds={"python"}, group_name="bench", owners=["team:platform"])
def floor_constant() -> int:
    """A constant: the least a code location can serve."""
    return 1


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[floor_constant])
