"""The daily revenue report: chart and summary of the last 30 days of marts.daily_revenue."""

import base64
from datetime import date, timedelta
from decimal import Decimal

import dagster as dg

from exports.defs.automation import EXPORTS_AUTOMATION
from exports.defs.checks import EXPORTS_FRESHNESS
from exports.defs.resources import ExportStore, Warehouse
from platform_ops.recovery import retry_transient

REPORT_DAYS = 30
FOLDER = "reports/daily_revenue"


def _summary(rows: list[tuple[date, int, Decimal, Decimal]]) -> str:
    first, last = rows[0][0], rows[-1][0]
    revenue = sum(r[2] for r in rows)
    orders = sum(r[1] for r in rows)
    payments = sum(r[3] for r in rows)
    best = max(rows, key=lambda r: r[2])
    last_week = rows[-7:]
    weekly_average = sum(r[2] for r in last_week) / len(last_week)
    return "\n".join(
        [
            f"## Daily revenue, {first.isoformat()} to {last.isoformat()}",
            "",
            "| | |",
            "|---|---|",
            f"| revenue | {revenue:,.2f} |",
            f"| orders | {orders:,} |",
            f"| payments received | {payments:,.2f} |",
            f"| average per day | {revenue / len(rows):,.2f} |",
            f"| best day | {best[0].isoformat()} ({best[2]:,.2f}) |",
            f"| {last.isoformat()} | {rows[-1][2]:,.2f} (7-day average {weekly_average:,.2f}) |",
        ]
    )


@dg.asset(
    key=["reports", "daily_revenue"],
    deps=[dg.AssetKey(["marts", "daily_revenue"])],
    group_name="reports",
    kinds={"python", "markdown"},
    owners=["team:bi"],
    tags={"layer": "exports"},
    automation_condition=EXPORTS_AUTOMATION,
    freshness_policy=EXPORTS_FRESHNESS,
)
def daily_revenue_report(
    context: dg.AssetExecutionContext, warehouse: Warehouse, export_store: ExportStore
) -> dg.MaterializeResult:
    """Chart and summary of revenue and payments over the mart's last 30 days."""
    with retry_transient(context), warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT max(day) FROM marts.daily_revenue")
        (last,) = cur.fetchone()
        if last is None:
            raise dg.Failure("marts.daily_revenue is empty: there is nothing to report yet")
        first = last - timedelta(days=REPORT_DAYS - 1)
        # Every day of the range, also days without orders, so the chart's time axis is honest.
        cur.execute(
            """SELECT d::date, coalesce(r.orders, 0), coalesce(r.revenue, 0),
                      coalesce(r.payments_received, 0)
               FROM generate_series(%s::date, %s::date, interval '1 day') AS d
               LEFT JOIN marts.daily_revenue r ON r.day = d::date
               ORDER BY 1""",
            (first, last),
        )
        rows = cur.fetchall()

    from exports.charts import revenue_chart  # at run time: see exports/charts.py

    png = revenue_chart([r[0] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
    summary = _summary(rows)
    area = export_store.area()
    chart_file, summary_file = f"{FOLDER}/{last.isoformat()}.png", f"{FOLDER}/{last.isoformat()}.md"
    with area.atomic_write(chart_file) as out:
        out.write(png)
    with area.atomic_write(summary_file) as out:
        out.write(summary.encode())
    context.log.info(f"report for {first} to {last} at {area.uri(chart_file)}")

    embedded = base64.b64encode(png).decode()
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(
                f"{summary}\n\n![daily revenue](data:image/png;base64,{embedded})"
            ),
            "first_day": first.isoformat(),
            "last_day": last.isoformat(),
            "revenue": float(sum(r[2] for r in rows)),
            "chart": dg.MetadataValue.path(area.uri(chart_file)),
            "summary": dg.MetadataValue.path(area.uri(summary_file)),
            "chart_bytes": len(png),
        }
    )
