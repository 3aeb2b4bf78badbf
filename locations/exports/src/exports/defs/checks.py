"""Freshness of everything this location publishes, as the FreshnessPolicy its assets carry.

Dagster's freshness daemon judges each asset by its latest materialisation and shows the state
(PASS, WARN, FAIL) in the UI; nothing runs inside the exports' own runs.
"""

from datetime import timedelta

import dagster as dg

# Exports follow the marts, which follow hourly loads: three hours without a refresh is worth a
# look, a day means the chain is stuck somewhere upstream or here.
EXPORTS_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=26), warn_window=timedelta(hours=3)
)
