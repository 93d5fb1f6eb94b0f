"""The delivery metrics contract: names the exporter writes and the dashboards read.

`shipway.delivery` computes the four delivery figures (DORA keys) from the audit trail and
exposes them under these names, one series per ``model`` and ``env`` label. The local stack
runs its exporter and scrapes it as job :data:`DELIVERY_JOB`; a cloud target gets the same
names from ``shipway report delivery --output prometheus`` (docs/operating-ml.md).
"""

from __future__ import annotations

from typing import NamedTuple

DELIVERY_JOB = "shipway-delivery"
AUDIT_RELATIVE_PATH = ".shipway/audit/audit.jsonl"  # where the runtime keeps the trail (shipway.audit)


class DeliveryMetric(NamedTuple):
    name: str
    help: str
    field: str  # the DeliveryRow attribute it exposes


DELIVERY_METRICS: tuple[DeliveryMetric, ...] = (
    DeliveryMetric("shipway_delivery_deployments", "Deployments (pin changes) in the report window", "deployments"),
    DeliveryMetric("shipway_delivery_deployments_per_day", "Deployment frequency over the window",
                   "deployments_per_day"),
    DeliveryMetric("shipway_delivery_lead_time_hours", "Median lead time from registration to deployment",
                   "lead_time_hours_median"),
    DeliveryMetric("shipway_delivery_change_failure_ratio", "Deployments followed by a failed up, failed "
                   "verification or rollback", "change_failure_rate"),
    DeliveryMetric("shipway_delivery_time_to_restore_minutes", "Median time from a failed change to the next "
                   "passing verification", "time_to_restore_minutes_median"),
    DeliveryMetric("shipway_delivery_unrestored_failures", "Failed changes not yet followed by a passing "
                   "verification", "unrestored_failures"),
    DeliveryMetric("shipway_delivery_incidents", "Incidents closed in the report window", "incidents"),
    DeliveryMetric("shipway_delivery_incident_minutes", "Median incident duration (open to close)",
                   "incident_minutes_median"),
)
DELIVERY_METRIC_NAMES = frozenset(m.name for m in DELIVERY_METRICS)
