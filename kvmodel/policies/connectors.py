"""KV connectors: the software that moves KV between a tier and HBM, one registry entry per
``[connector.<key>]`` of the catalog (``hardware_db/connectors.toml`` plus any file loaded
with ``kvmodel.load_hardware``).

Entries are built on first use from the active catalog, so a connector added to the catalog
is a registered policy by the same key. Parameters (defaults: the catalog entry) override the
entry's numbers: ``per_request_s`` (s), ``per_block_s`` (s per descriptor) and
``bandwidth_efficiency`` (fraction of the path's sustained bandwidth, in (0, 1]).

Closed form: ``kvmodel.tiers.transfer_seconds`` -- per-request cost + descriptors x per-block
cost + bytes / (path bandwidth x efficiency / concurrent) + the path's setup costs. The
reference simulator's prefix-load path calls the same function, so there is no separate
simulator class (``sim`` is None and :meth:`Registry.make` returns a :class:`PolicyRef`).
"""

from __future__ import annotations

from kvmodel.catalog.hardware import get_connector, list_entries
from kvmodel.policies import Param, PolicyEntry, Registry

__all__ = ["REGISTRY", "CLOSED_FORM_FN"]

CLOSED_FORM_FN = "kvmodel.tiers:transfer_seconds"


def _entry(key: str) -> PolicyEntry:
    c = get_connector(key)
    stream = ("layer-wise: only the load slower than the prefill is exposed"
              if c.streaming == "layer" else "loads before prefill: the whole load is exposed")
    return PolicyEntry(
        name=key, description=f"{c.name} ({c.family})",
        closed_form=f"transfer_seconds/{c.streaming}",
        params=(Param("per_request_s", c.per_request_s, "s", "fixed cost per request and tier load"),
                Param("per_block_s", c.per_block_s, "s/block",
                      "cost per transfer descriptor not hidden by transfers in flight"),
                Param("bandwidth_efficiency", c.bandwidth_efficiency, "fraction",
                      "achievable share of the path's sustained bandwidth", low=0.0,
                      low_open=True, high=1.0)),
        closed_form_fn=CLOSED_FORM_FN,
        closed_form_note=(f"{stream}; saves {'block the request' if c.save_sync else 'overlap'}; "
                          "queueing on shared path segments is the tiers model's, not the connector's"),
        tags=(c.family, c.streaming, "sync-save" if c.save_sync else "async-save"),
        object_from_sim=False)


class ConnectorRegistry(Registry):
    """A :class:`Registry` whose entries follow the active catalog's connector entries."""

    def _sync(self) -> None:
        for key in list_entries("connector"):
            if key not in self._entries:
                self.register(_entry(key))

    def __getitem__(self, name: str) -> PolicyEntry:
        self._sync()
        return super().__getitem__(name)

    def __iter__(self):
        self._sync()
        return super().__iter__()

    def __len__(self) -> int:
        self._sync()
        return super().__len__()

    def names(self) -> tuple[str, ...]:
        self._sync()
        return super().names()

    def get_entry(self, name, label=None) -> PolicyEntry:
        self._sync()
        return super().get_entry(name, label)

    def check_params(self, name, params):
        self._sync()
        return super().check_params(name, params)


REGISTRY = ConnectorRegistry("connector", "software on the KV path between a tier and HBM")
