-- Business rule: the provider never collects more for an order than the order is worth.
-- Rows returned are violations. Attached to fct_orders (the order's total is the reference).
{{ config(meta={'dagster': {'ref': {'name': 'fct_orders'}}}) }}

select
    orders.order_id,
    orders.order_total,
    sum(payments.amount) as paid
from {{ ref('fct_orders') }} as orders
join {{ ref('stg_payments') }} as payments using (order_id)
group by orders.order_id, orders.order_total
having sum(payments.amount) > orders.order_total
