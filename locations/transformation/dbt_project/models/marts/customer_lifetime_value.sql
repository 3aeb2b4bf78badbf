-- Revenue counts every order that was not cancelled, valued at its lines' prices.
select
    customer_id,
    count(*) as orders,
    sum(order_total)::numeric(14, 2) as lifetime_value,
    round(avg(order_total), 2)::numeric(14, 2) as average_order_value,
    min(order_date) as first_order_date,
    max(order_date) as last_order_date
from {{ ref('fct_orders') }}
where not is_cancelled
group by customer_id
