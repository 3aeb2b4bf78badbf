-- The demo source system: the operational database of an online shop. Every table carries
-- updated_at, maintained by the application (here: the generator), which is what incremental
-- extraction keys on. Indexes on updated_at keep "rows changed since X" cheap.
CREATE TABLE IF NOT EXISTS customers (
    customer_id bigint PRIMARY KEY,
    email       text        NOT NULL,
    full_name   text        NOT NULL,
    country     text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS customers_updated_at ON customers (updated_at);

CREATE TABLE IF NOT EXISTS products (
    product_id bigint PRIMARY KEY,
    sku        text          NOT NULL UNIQUE,
    name       text          NOT NULL,
    category   text          NOT NULL,
    unit_price numeric(10,2) NOT NULL CHECK (unit_price > 0),
    updated_at timestamptz   NOT NULL
);
CREATE INDEX IF NOT EXISTS products_updated_at ON products (updated_at);

CREATE TABLE IF NOT EXISTS orders (
    order_id    bigint PRIMARY KEY,
    customer_id bigint      NOT NULL REFERENCES customers,
    status      text        NOT NULL
        CHECK (status IN ('placed', 'paid', 'shipped', 'delivered', 'cancelled')),
    ordered_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_updated_at ON orders (updated_at);

CREATE TABLE IF NOT EXISTS order_items (
    order_item_id bigint PRIMARY KEY,
    order_id      bigint        NOT NULL REFERENCES orders,
    product_id    bigint        NOT NULL REFERENCES products,
    quantity      integer       NOT NULL CHECK (quantity > 0),
    unit_price    numeric(10,2) NOT NULL,
    updated_at    timestamptz   NOT NULL
);
CREATE INDEX IF NOT EXISTS order_items_updated_at ON order_items (updated_at);
CREATE INDEX IF NOT EXISTS order_items_order_id ON order_items (order_id);

-- The generator's own bookkeeping (not part of the shop's data model, never ingested).
CREATE SCHEMA IF NOT EXISTS generator;
CREATE TABLE IF NOT EXISTS generator.state (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seed             bigint  NOT NULL,
    size             text    NOT NULL,
    first_day        date    NOT NULL,
    last_day         date    NOT NULL,
    next_customer_id bigint  NOT NULL,
    next_order_id    bigint  NOT NULL,
    next_item_id     bigint  NOT NULL,
    next_payment_id  bigint  NOT NULL
);
