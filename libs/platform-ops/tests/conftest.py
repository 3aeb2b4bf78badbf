"""A real HTTP receiver on 127.0.0.1 for the alert tests."""

from collections.abc import Iterator

import pytest

from platform_ops.testing import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(200) as r:
        yield r


@pytest.fixture
def failing_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(500) as r:
        yield r
