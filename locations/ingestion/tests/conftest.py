"""The ingestion location's definitions, loaded once, and a runner bound to them."""

import dagster as dg
import pytest

from ingestion.definitions import defs as load_defs
from platform_devkit.testing import materialize as materialize_in


@pytest.fixture(scope="session")
def ingestion_defs() -> dg.Definitions:
    return load_defs()


@pytest.fixture
def materialize(ingestion_defs: dg.Definitions):
    """materialize(["raw/orders"], partition_key=..., ...) with the location's resources."""
    return lambda keys, **kwargs: materialize_in(ingestion_defs, keys, **kwargs)
