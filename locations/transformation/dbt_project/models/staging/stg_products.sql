select
    product_id,
    sku,
    name as product_name,
    category,
    unit_price,
    updated_at
from {{ source('raw', 'products') }}
