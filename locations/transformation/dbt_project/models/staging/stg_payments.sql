select
    payment_id,
    order_id,
    amount,
    currency,
    method,
    paid_at,
    (paid_at at time zone 'UTC')::date as paid_date,
    file_date
from {{ source('raw', 'payments') }}
