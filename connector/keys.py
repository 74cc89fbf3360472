"""Every Redis key the connector writes, in one place.

Two families:

- the app's TOP state (call budget, ban, tokens) under ``{prefix}:{top:<app_key>}:…``;
- the shop's ledger and sync state under ``{<prefix>}:…``.

The hash tags (``{...}``) put every key one Lua script touches in one slot (a ledger script
touches one order, several SKUs, their movement logs, de-duplication keys and the pending
set at once), so the layout is ready for Redis Cluster; the client today speaks to a single
Redis endpoint (a standalone server or a managed primary), not to a cluster. Values are
explicit strings, integers, hashes, sets and sorted sets; never pickles.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    """Key shapes under one prefix (``REDIS_KEY_PREFIX``), so tenants and tests never mix."""

    prefix: str

    # ------------------------------------------------------------- TOP app state

    def _app(self, app_key: str) -> str:
        return f"{self.prefix}:{{top:{app_key}}}"

    def call_budget(self, app_key: str, method: str | None = None) -> str:
        """String: the GCRA "theoretical arrival time" (epoch ms) of the app's call budget."""
        return f"{self._app(app_key)}:budget:{method or '*'}"

    def call_budget_epoch(self, app_key: str) -> str:
        """String without a TTL: set at the budget's first reservation; its absence under
        a running replica means the budget's state was lost (budget_acquire.lua)."""
        return f"{self._app(app_key)}:budget-epoch"

    def call_ban(self, app_key: str, method: str | None = None) -> str:
        """String with a TTL: present while the platform bans the app's calls (code 7),
        or with ``method`` only that API's (a ban by API, reference §6)."""
        return f"{self._app(app_key)}:ban" + (f":{method}" if method else "")

    def call_quota(self, app_key: str, day: str) -> str:
        """String (a count) with a TTL: the app's calls on one China-time day (YYYYMMDD)."""
        return f"{self._app(app_key)}:quota:{day}"

    def token(self, app_key: str) -> str:
        """Hash: the newest access and refresh tokens, their expiry and a version."""
        return f"{self._app(app_key)}:token"

    def token_lock(self, app_key: str) -> str:
        """String with a TTL: held by the one replica refreshing the token."""
        return f"{self._app(app_key)}:token:lock"

    # ------------------------------------------------------------- ledger

    @property
    def _shop(self) -> str:
        return f"{{{self.prefix}}}"

    def sku(self, sku: str) -> str:
        """Hash: one SKU's stock (see ``connector/ledger/ledger.py`` for the fields)."""
        return f"{self._shop}:sku:{sku}"

    def movements(self, sku: str, warehouse: str) -> str:
        """Sorted set: movements applied at one warehouse since its last stocktake.

        Score = occurred_at (epoch ms); member = ``<dedupe key>|<signed delta>``. Kept so a
        late stocktake can re-apply the movements that happened after it.
        """
        # "|" cannot occur in a validated code, so no (sku, warehouse) pair can collide.
        return f"{self._shop}:mv:{sku}|{warehouse}"

    def order(self, order_id: str) -> str:
        """Hash: per-line state of one order (what it reserved, cancelled or shipped)."""
        return f"{self._shop}:order:{order_id}"

    def seen(self, dedupe_key: str) -> str:
        """String with a TTL: this event (or order line) has had its effect."""
        return f"{self._shop}:seen:{dedupe_key}"

    def reported(self, attempt: str) -> str:
        """String with a TTL: the outputs of this ledger apply call were produced."""
        return f"{self._shop}:reported:{attempt}"

    @property
    def marker(self) -> str:
        """Hash: the ledger's identity (``id``, ``created_ms``, ``layout``), the last input
        offset it applied of each partition (``p:<topic>:<partition>``) and the last whose
        outputs were produced (``r:…``); present from the ledger's first start, so its
        absence means the ledger is gone (``connector/ledger/positions.py``)."""
        return f"{self._shop}:ledger"

    @property
    def pending(self) -> str:
        """Sorted set: SKUs Taobao has not confirmed yet; score = when to push (epoch ms)."""
        return f"{self._shop}:pending"

    @property
    def pending_since(self) -> str:
        """Sorted set: SKU -> when its oldest unconfirmed change was made (epoch ms), kept
        for SKUs whose pending score became a retry time (for the oldest-pending age)."""
        return f"{self._shop}:pending:since"

    @property
    def sku_index(self) -> str:
        """Set: every SKU code the ledger knows (for reports and reconciliation; SSCAN it)."""
        return f"{self._shop}:skus"

    # ------------------------------------------------------------- Taobao projection

    def mapping(self, sku: str) -> str:
        """String with a TTL: ``<num_iid>:<sku_id>`` (``<num_iid>:`` for an item without
        SKUs) or ``-`` when the merchant code is not on Taobao."""
        return f"{self._shop}:map:{sku}"

    def item(self, num_iid: int) -> str:
        """Hash: what the connector knows of a Taobao item (shelf state, who delisted it)."""
        return f"{self._shop}:item:{num_iid}"

    def item_writes(self, num_iid: int) -> str:
        """List with a TTL: the quantities the connector's last writes left on an item
        (``<sku_id|->:<quantity>:<ms>``), newest first, to tell them from other changes."""
        return f"{self._shop}:item:{num_iid}:writes"

    def push_lease(self, num_iid: int) -> str:
        """String with a TTL: the replica currently pushing this item holds it."""
        return f"{self._shop}:lease:{num_iid}"

    def intent(self, num_iid: int) -> str:
        """Hash: incremental updates recorded before the call, until their outcome is known."""
        return f"{self._shop}:intent:{num_iid}"

    # ------------------------------------------------------------- message service bridge

    @property
    def tmc_lease(self) -> str:
        """String with a TTL: held by the one replica bridging Taobao's messages to Kafka."""
        return f"{self._shop}:tmc:lease"

    def tmc_sent(self, record_id: str) -> str:
        """String with a TTL: the bridge has produced this event (or alert) and the broker
        acknowledged it, so a redelivered message does not produce it again."""
        return f"{self._shop}:tmc:sent:{record_id}"

    def tmc_healed(self, listing: str) -> str:
        """String with a TTL: the bridge wrote the ledger's figure over a change someone
        else made on this listing lately (it does so once in that time)."""
        return f"{self._shop}:tmc:healed:{listing}"
