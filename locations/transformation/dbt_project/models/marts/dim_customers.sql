with orders as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) filter (where not is_cancelled) as orders
    from {{ ref('fct_orders') }}
    group by customer_id
)

select
    customers.customer_id,
    customers.email,
    customers.full_name,
    customers.country,
    customers.created_at,
    orders.first_order_date,
    orders.last_order_date,
    coalesce(orders.orders, 0) as orders
from {{ ref('stg_customers') }} as customers
left join orders using (customer_id)
