select
    order_id,
    customer_id,
    status,
    status = 'cancelled' as is_cancelled,
    ordered_at,
    -- Business days are UTC days, whatever the session's time zone.
    (ordered_at at time zone 'UTC')::date as order_date,
    updated_at
from {{ source('raw', 'orders') }}
