"""The fleet: one desired split for many hosts, steered through etcd.

`store` names the keys and talks to etcd (its v3 JSON gateway; why in its docstring),
`agent` follows the desired split on one host, `local` reads this host's agent record and
hold without etcd, `guard` runs a fleet migration, `service` is what the faces call
(`Console.fleet()`).
"""

from vrm_tui.core.errors import FleetUnreachable, StaleDesired
from vrm_tui.fleet.service import Confirmation, FleetService, FleetStatus, RollbackOutcome
from vrm_tui.fleet.store import Desired, HostReport

__all__ = ["Confirmation", "Desired", "FleetService", "FleetStatus", "FleetUnreachable",
           "HostReport", "RollbackOutcome", "StaleDesired"]
