-- One row per UTC business day with orders or payments.
with orders as (
    select
        order_date as day,
        count(*) as orders,
        count(distinct customer_id) as customers,
        sum(item_count) as items,
        sum(order_total) as revenue
    from {{ ref('fct_orders') }}
    where not is_cancelled
    group by order_date
),

cancelled as (
    select order_date as day, count(*) as cancelled_orders
    from {{ ref('fct_orders') }}
    where is_cancelled
    group by order_date
),

payments as (
    select paid_date as day, count(*) as payments, sum(amount) as payments_received
    from {{ ref('stg_payments') }}
    group by paid_date
)

select
    day,
    coalesce(orders.orders, 0) as orders,
    coalesce(orders.customers, 0) as customers,
    coalesce(orders.items, 0) as items,
    coalesce(orders.revenue, 0)::numeric(14, 2) as revenue,
    coalesce(cancelled.cancelled_orders, 0) as cancelled_orders,
    coalesce(payments.payments, 0) as payments,
    coalesce(payments.payments_received, 0)::numeric(14, 2) as payments_received
from orders
full outer join cancelled using (day)
full outer join payments using (day)
