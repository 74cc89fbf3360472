"""The TOP client against the running sandbox gateway over real HTTP, with a real Redis."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from connector.errors import (
    TaobaoAuthError,
    TaobaoCallerError,
    TaobaoFullUpdateForbidden,
    TaobaoTransientError,
    TaobaoUnknownOutcome,
)
from connector.sandbox.server import SandboxServer
from connector.taobao.client import TopClient
from tests.conftest import SandboxFactory
from tests.helpers import admin, calls, set_faults, state_item

pytestmark = pytest.mark.integration

MakeClient = Callable[..., TopClient]

TSHIRT, SNEAKER, MUG, NOTEBOOK, HEADPHONES, JACKET = (600000000000 + i for i in range(1, 7))
RED_M, RED_L, BLUE_M = 700000000011, 700000000012, 700000000013


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
async def test_every_sign_method_is_accepted(
    sandbox: SandboxServer, make_client: MakeClient, sign_method: str
) -> None:
    client = make_client(sandbox, sign_method=sign_method)

    item = await client.get_item(MUG)

    assert item.num == 60
    assert item.outer_id == "MUG-WHITE"


@pytest.mark.parametrize("simplify", [False, True])
async def test_stock_updates_full_incremental_and_batch(
    sandbox: SandboxServer, make_client: MakeClient, simplify: bool
) -> None:
    client = make_client(sandbox, simplify=simplify)

    mug = await client.update_quantity(MUG, 42)
    assert mug.num == 42
    mug = await client.update_quantity(MUG, -2, incremental=True)
    assert mug.num == 40

    shirt = await client.update_quantity(TSHIRT, 3, sku_id=RED_M)
    assert {s.sku_id: s.quantity for s in shirt.skus}[RED_M] == 3
    shirt = await client.update_quantity(TSHIRT, 4, outer_id="TSHIRT-RED-L")
    assert {s.sku_id: s.quantity for s in shirt.skus}[RED_L] == 4

    shirt = await client.update_sku_quantities(TSHIRT, {RED_M: 1, RED_L: 2, BLUE_M: 3})
    assert shirt.num == 6  # the item total follows its SKUs
    assert sorted((s.sku_id, s.quantity) for s in shirt.skus) == [
        (RED_M, 1),
        (RED_L, 2),
        (BLUE_M, 3),
    ]


async def test_delist_then_relist(sandbox: SandboxServer, make_client: MakeClient) -> None:
    client = make_client(sandbox)

    await client.delist_item(MUG)
    assert (await client.get_item(MUG)).approve_status == "instock"

    await client.list_item(MUG, 5)
    item = await client.get_item(MUG)
    assert item.on_sale
    assert item.num == 5


async def test_on_sale_item_cannot_go_to_zero(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox)

    with pytest.raises(TaobaoCallerError, match="FORBIDDEN_QUANTITY_ZERO_ERROR"):
        await client.update_quantity(MUG, 0)

    await client.delist_item(MUG)
    assert (await client.update_quantity(MUG, 0)).num == 0
    with pytest.raises(TaobaoCallerError, match="FORBIDDEN_QUANTITY_ZERO_ERROR"):
        await client.list_item(MUG, 0)


async def test_presale_item_refuses_full_updates(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox)

    with pytest.raises(TaobaoFullUpdateForbidden):
        await client.update_quantity(HEADPHONES, 10)
    assert (await client.update_quantity(HEADPHONES, 5, incremental=True)).num == 35
    assert len(calls(sandbox, "taobao.item.quantity.update")) == 2  # the refusal was not retried


async def test_listing_reads_with_modified_window_and_paging(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox)
    before = datetime.now(UTC) - timedelta(seconds=2)
    await client.update_quantity(MUG, 11)

    onsale = [i.num_iid async for i in client.iter_onsale(page_size=2)]
    assert sorted(onsale) == [TSHIRT, SNEAKER, MUG, HEADPHONES, JACKET]
    assert len(calls(sandbox, "taobao.items.onsale.get")) == 3  # 5 items, 2 a page

    changed = [i.num_iid async for i in client.iter_onsale(start_modified=before)]
    assert changed == [MUG]

    instock = [i.num_iid async for i in client.iter_inventory()]
    assert instock == [NOTEBOOK]


async def test_merchant_code_lookups_and_warehouse_inventory(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox)

    skus = await client.skus_by_outer_id("TSHIRT-BLUE-M")
    assert [(s.num_iid, s.sku_id) for s in skus] == [(TSHIRT, BLUE_M)]
    assert await client.skus_by_outer_id("NO-SUCH-CODE") == []

    items = await client.items_by_outer_ids(["MUG-WHITE", "NOTEBOOK-A5", "NO-SUCH-CODE"])
    assert sorted(i.num_iid for i in items) == [MUG, NOTEBOOK]

    result = await client.query_inventory([800000000011, 123])
    assert {r.sc_item_id for r in result.records} == {800000000011}
    assert sum(r.quantity for r in result.records) == 41
    assert len(result.missing) == 1


async def test_unknown_item_is_a_caller_error_and_not_retried(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox)

    with pytest.raises(TaobaoCallerError) as info:
        await client.update_quantity(123456, 1)

    assert info.value.sub_code == "isv.item-not-exist:invalid-numIid-or-iid"
    assert info.value.request_id
    assert len(calls(sandbox)) == 1


async def test_platform_errors_are_retried_up_to_max_attempts(
    sandbox_factory: SandboxFactory, make_client: MakeClient
) -> None:
    sandbox = sandbox_factory()
    set_faults(sandbox, {"error_rates": {"isp.remote-service-timeout": 1.0}})
    client = make_client(sandbox, max_attempts=3)

    with pytest.raises(TaobaoTransientError) as info:
        await client.update_quantity(MUG, 9)

    assert info.value.attempts == 3
    assert len(calls(sandbox)) == 3
    assert state_item(sandbox, MUG)["num"] == 60  # nothing applied


async def test_intermittent_platform_errors_are_absorbed(
    sandbox_factory: SandboxFactory, make_client: MakeClient
) -> None:
    sandbox = sandbox_factory(seed=3)
    set_faults(sandbox, {"error_rates": {"10": 0.3, "isp.unknown-error": 0.2}})
    client = make_client(sandbox, max_attempts=10)

    for quantity in range(1, 21):
        assert (await client.update_quantity(MUG, quantity)).num == quantity

    assert len(calls(sandbox)) > 20  # some calls failed and were retried


async def test_call_limit_ban_is_waited_out(
    sandbox_factory: SandboxFactory, make_client: MakeClient
) -> None:
    sandbox = sandbox_factory(qps=2, ban_s=1)  # low enough to ban even when calls are slow
    # Our own budget deliberately looser than the platform's, to provoke code 7.
    client = make_client(sandbox, qps=1000, burst=100)

    for quantity in range(1, 9):
        await client.update_quantity(MUG, quantity)

    codes = [c["code"] for c in calls(sandbox)]
    assert 7 in codes  # the platform banned us at least once …
    assert state_item(sandbox, MUG)["num"] == 8  # … and every update still landed


async def test_expired_session_is_refreshed_then_retried(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox)
    await client.get_item(MUG)

    admin(sandbox, "POST", "/sandbox/tokens/expire")
    item = await client.get_item(MUG)

    assert item.num == 60
    logged = calls(sandbox)
    assert [(c["method"], c["code"]) for c in logged] == [
        ("taobao.item.seller.get", None),
        ("taobao.item.seller.get", 27),
        ("taobao.top.auth.token.refresh", None),
        ("taobao.item.seller.get", None),
    ]


async def test_session_close_to_expiry_is_refreshed_before_calling(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    client = make_client(sandbox, session_expires_at=soon, refresh_margin_s=60)

    await client.get_item(MUG)

    # Refreshed beforehand: one token exchange, and no call failed with code 27.
    assert [(c["method"], c["code"]) for c in calls(sandbox)] == [
        ("taobao.top.auth.token.refresh", None),
        ("taobao.item.seller.get", None),
    ]
    # A second replica sharing Redis uses the refreshed token, with no second refresh.
    other = make_client(sandbox, session_expires_at=soon, refresh_margin_s=60)
    await other.get_item(MUG)
    assert len(calls(sandbox, "taobao.top.auth.token.refresh")) == 1


async def test_drop_after_apply_on_incremental_update_is_an_unknown_outcome(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    set_faults(
        sandbox,
        {"drop_after_apply_rate": 1.0, "methods": ["taobao.item.quantity.update"]},
    )
    client = make_client(sandbox)

    with pytest.raises(TaobaoUnknownOutcome):
        await client.update_quantity(HEADPHONES, 5, incremental=True)

    assert state_item(sandbox, HEADPHONES)["num"] == 35  # applied exactly once
    assert len(calls(sandbox, "taobao.item.quantity.update")) == 1
    # Reading the item back resolves the outcome.
    assert (await client.get_item(HEADPHONES)).num == 35


async def test_drop_after_apply_on_full_update_is_retried_safely(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    set_faults(
        sandbox,
        {"drop_after_apply_rate": 0.5, "methods": ["taobao.item.quantity.update"]},
    )
    client = make_client(sandbox, max_attempts=20)

    for quantity in (7, 8, 9):
        await client.update_quantity(MUG, quantity)

    assert state_item(sandbox, MUG)["num"] == 9


async def test_response_held_past_the_timeout_is_an_unknown_outcome(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    set_faults(
        sandbox,
        {
            "hang_after_apply_rate": 1.0,
            "timeout_s": 1.0,
            "methods": ["taobao.item.quantity.update"],
        },
    )
    client = make_client(sandbox, timeout_s=0.3)

    with pytest.raises(TaobaoUnknownOutcome):
        await client.update_quantity(HEADPHONES, 1, incremental=True)
    assert (await client.get_item(HEADPHONES)).num == 31


async def test_wrong_secret_names_the_setting(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox, app_secret="not-the-secret")

    with pytest.raises(TaobaoAuthError, match="TAOBAO_APP_SECRET"):
        await client.get_item(MUG)
    assert len(calls(sandbox)) == 1


async def test_wrong_app_key_names_the_setting(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox, app_key="someone-else")

    with pytest.raises(TaobaoAuthError, match="TAOBAO_APP_KEY"):
        await client.get_item(MUG)


async def test_unreachable_gateway_is_transient(
    make_client: MakeClient, sandbox: SandboxServer
) -> None:
    client = make_client(sandbox, gateway_url="http://127.0.0.1:9/router/rest", max_attempts=2)

    with pytest.raises(TaobaoTransientError, match="unreachable"):
        await client.get_item(MUG)


async def test_no_secret_in_logs_or_errors(
    sandbox: SandboxServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    set_faults(sandbox, {"error_rates": {"isp.remote-service-error": 0.5}})
    client = make_client(sandbox, max_attempts=10)
    errors: list[str] = []

    await client.get_item(MUG)
    admin(sandbox, "POST", "/sandbox/tokens/expire")  # forces a refresh through /token
    await client.update_quantity(MUG, 3)
    for bad in (client.update_quantity(123, 1), client.update_quantity(MUG, -1)):
        try:
            await bad
        except TaobaoCallerError as exc:
            errors.append(f"{exc!s} {exc!r}")

    text = caplog.text + " ".join(errors) + repr(client)
    config = sandbox.config
    for secret in (config.app_secret, config.session, config.refresh_token):
        assert secret not in text
    assert len(errors) == 2
