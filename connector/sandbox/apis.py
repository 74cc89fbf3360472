"""The TOP APIs the sandbox serves: the :data:`APIS` table from method name to :class:`Api`.

Each :class:`Api` has a ``parse`` step that validates the call's parameters (40/41, before
any state is touched) and returns a runner; the runner does the call against the
:class:`~connector.sandbox.state.SandboxState` in a :class:`CallContext` and returns the
result body (business rules raise code 15 with an ``isv.*`` sub code).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final, cast

from connector.sandbox.api_types import Api, CallContext, Runner
from connector.sandbox.item_events import Snapshot, changes
from connector.sandbox.model import (
    BANNERS,
    ORDER_FIELDS,
    ApproveStatus,
    Item,
    TopFault,
    sku_to_json,
)
from connector.sandbox.params import (
    fields_param,
    invalid_param,
    missing_param,
    opt_int,
    opt_str,
    order_param,
    paging_params,
    pairs_param,
    req_int,
    req_str,
    time_param,
    to_int,
    update_type_param,
)
from connector.sandbox.responses import Body, pick, render_item, shelf_result, stock_result, wrap
from connector.sandbox.trade_apis import TRADE_APIS

__all__ = ["APIS", "Api", "CallContext", "Runner"]


def _item_quantity_update(params: Mapping[str, str]) -> Runner:
    num_iid = req_int(params, "num_iid", 1)
    quantity = req_int(params, "quantity")
    sku_id = opt_int(params, "sku_id", 1)
    outer_id = opt_str(params, "outer_id")
    update_type = update_type_param(params)

    def run(ctx: CallContext) -> Body:
        item = _publishing(
            ctx,
            num_iid,
            lambda: ctx.state.catalog.update_item_quantity(
                num_iid,
                quantity,
                now=ctx.now,
                sku_id=sku_id,
                outer_id=None if sku_id is not None else outer_id,
                update_type=update_type,
                zero_onsale=ctx.state.config.zero_onsale,
            ),
        )
        return stock_result(item, ctx.simplify)

    return run


def _skus_quantity_update(params: Mapping[str, str]) -> Runner:
    num_iid = req_int(params, "num_iid", 1)
    by_id = opt_str(params, "skuid_quantities")
    by_outer = opt_str(params, "outerid_quantities")
    if by_id is None and by_outer is None:
        raise missing_param("skuid_quantities")
    if by_id is not None:
        entries = pairs_param(by_id, "skuid_quantities", numeric_key=True)
    else:
        entries = pairs_param(cast(str, by_outer), "outerid_quantities", numeric_key=False)
    if not entries:
        raise missing_param("skuid_quantities")
    update_type = update_type_param(params)

    def run(ctx: CallContext) -> Body:
        item = _publishing(
            ctx,
            num_iid,
            lambda: ctx.state.catalog.update_skus_quantity(
                num_iid,
                entries,
                now=ctx.now,
                by_outer_id=by_id is None,
                update_type=update_type,
                zero_onsale=ctx.state.config.zero_onsale,
            ),
        )
        return stock_result(item, ctx.simplify)

    return run


def _listing(params: Mapping[str, str]) -> Runner:
    num_iid = req_int(params, "num_iid", 1)
    num = req_int(params, "num", 0)
    return lambda ctx: shelf_result(
        _publishing(ctx, num_iid, lambda: ctx.state.catalog.list_item(num_iid, num, now=ctx.now))
    )


def _delisting(params: Mapping[str, str]) -> Runner:
    num_iid = req_int(params, "num_iid", 1)
    return lambda ctx: shelf_result(
        _publishing(ctx, num_iid, lambda: ctx.state.catalog.delist_item(num_iid, now=ctx.now))
    )


def _publishing(ctx: CallContext, num_iid: int, change: Callable[[], Item]) -> Item:
    """Run a write and publish the TMC messages of what it changed."""
    before = Snapshot.of(ctx.state.catalog.get_item(num_iid))
    item = change()
    ctx.state.publish(changes(before, item))
    return item


def _seller_get(params: Mapping[str, str]) -> Runner:
    fields = fields_param(params)
    num_iid = req_int(params, "num_iid", 1)

    def run(ctx: CallContext) -> Body:
        return {"item": render_item(ctx.state.catalog.get_item(num_iid), fields, ctx.simplify)}

    return run


def _listing_query(status: ApproveStatus) -> Callable[[Mapping[str, str]], Runner]:
    instock = status == "instock"

    def parse(params: Mapping[str, str]) -> Runner:
        fields = fields_param(params)
        start = time_param(params, "start_modified")
        end = time_param(params, "end_modified")
        page_no, page_size = paging_params(params, 101 if instock else None)
        order_by, descending = order_param(
            params, ORDER_FIELDS - {"sold_quantity"} if instock else ORDER_FIELDS
        )
        banner_text = opt_str(params, "banner") if instock else None
        if banner_text is not None and banner_text not in BANNERS:
            raise invalid_param("banner", f"banner 应为 {'|'.join(BANNERS)}")

        def run(ctx: CallContext) -> Body:
            total, page = ctx.state.catalog.list_items(
                status,
                start_modified=start,
                end_modified=end,
                banner=banner_text,
                order_by=order_by,
                descending=descending,
                page_no=page_no,
                page_size=page_size,
            )
            items = [render_item(i, fields, ctx.simplify) for i in page]
            return {"total_results": total, "items": wrap(items, "item", ctx.simplify)}

        return run

    return parse


def _skus_custom_get(params: Mapping[str, str]) -> Runner:
    fields = fields_param(params)
    outer_id = req_str(params, "outer_id")

    def run(ctx: CallContext) -> Body:
        found = ctx.state.catalog.skus_by_outer_id(outer_id)
        skus = [pick(sku_to_json(i, s), fields) for i, s in found]
        return {"skus": wrap(skus, "sku", ctx.simplify)}

    return run


def _items_custom_get(params: Mapping[str, str]) -> Runner:
    fields = fields_param(params)
    outer_ids = [o.strip() for o in req_str(params, "outer_id").split(",") if o.strip()]
    if not outer_ids:
        raise missing_param("outer_id")
    if len(outer_ids) > 40:
        raise invalid_param("outer_id", f"outer_id 最多 40 个 (got {len(outer_ids)})")

    def run(ctx: CallContext) -> Body:
        found = ctx.state.catalog.items_by_outer_ids(outer_ids)
        items = [render_item(i, fields, ctx.simplify) for i in found]
        return {"items": wrap(items, "item", ctx.simplify)}

    return run


def _inventory_query(params: Mapping[str, str]) -> Runner:
    parts = [p.strip() for p in req_str(params, "sc_item_ids").split("^") if p.strip()]
    if len(parts) > 50:
        raise invalid_param("sc_item_ids", f"sc_item_ids 最多 50 个 (got {len(parts)})")
    ids = [to_int(p, "sc_item_ids", 1) for p in parts]

    def run(ctx: CallContext) -> Body:
        records, unknown = ctx.state.catalog.inventory(ids)
        sums = [
            {
                "sc_item_id": r.sc_item_id,
                "sc_item_code": r.sc_item_code,
                "store_code": r.store_code,
                "inventory_type": r.inventory_type,
                "inventory_type_name": r.inventory_type_name,
                "quantity": r.quantity,
                "occupy_quantity": r.occupy_quantity,
                "reserve_quantity": r.reserve_quantity,
            }
            for r in records
        ]
        tips = [{"sc_item_id": i, "info": "后端商品不存在"} for i in unknown]
        return {
            "item_inventorys": wrap(sums, "inventory_sum", ctx.simplify),
            "tip_infos": wrap(tips, "tip_info", ctx.simplify),
        }

    return run


def _token_refresh(params: Mapping[str, str]) -> Runner:
    refresh_token = req_str(params, "refresh_token")

    def run(ctx: CallContext) -> Body:
        if not ctx.state.tokens.refreshable:
            raise TopFault(
                15,
                "Remote service error",
                "isv.invalid-parameter:refresh_token",
                "该应用使用固定时长token，不提供刷新功能 (UNCONFIRMED text)",
            )
        issued = ctx.state.tokens.rotate(refresh_token, ctx.now.timestamp())
        if issued is None:
            raise TopFault(
                15,
                "Remote service error",
                "isv.invalid-parameter:refresh_token",
                "refresh_token 无效或已过期 (invalid or expired)",
            )
        return {"token_result": json.dumps(issued, separators=(",", ":"))}

    return run


APIS: Final[Mapping[str, Api]] = {
    **TRADE_APIS,
    "taobao.item.quantity.update": Api(_item_quantity_update, writes=True),
    "taobao.skus.quantity.update": Api(_skus_quantity_update, writes=True),
    "taobao.item.update.listing": Api(_listing, writes=True),
    "taobao.item.update.delisting": Api(_delisting, writes=True),
    "taobao.item.seller.get": Api(_seller_get),
    "taobao.items.onsale.get": Api(_listing_query("onsale")),
    "taobao.items.inventory.get": Api(_listing_query("instock")),
    "taobao.skus.custom.get": Api(_skus_custom_get),
    "taobao.items.custom.get": Api(_items_custom_get),
    "taobao.inventory.query": Api(_inventory_query),
    # Writes token state, but no stock: ``applied`` in the call log tracks stock changes.
    "taobao.top.auth.token.refresh": Api(_token_refresh, needs_session=False),
}
