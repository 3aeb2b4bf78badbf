{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#- Incremental on the order's updated_at: an order and its lines change together (lines are
    written with the order), so re-selecting changed orders re-aggregates their lines. ">=" with
    delete+insert re-reads the boundary rows and stays idempotent. -#}
with orders as (
    select * from {{ ref('stg_orders') }}
    {% if is_incremental() %}
    where updated_at >= (select coalesce(max(updated_at), '-infinity') from {{ this }})
    {% endif %}
),

lines as (
    select
        order_id,
        count(*) as line_count,
        sum(quantity) as item_count,
        sum(line_total) as order_total
    from {{ ref('stg_order_items') }}
    where order_id in (select order_id from orders)
    group by order_id
)

select
    orders.order_id,
    orders.customer_id,
    orders.status,
    orders.is_cancelled,
    orders.ordered_at,
    orders.order_date,
    coalesce(lines.line_count, 0) as line_count,
    coalesce(lines.item_count, 0) as item_count,
    coalesce(lines.order_total, 0)::numeric(14, 2) as order_total,
    orders.updated_at
from orders
left join lines using (order_id)
