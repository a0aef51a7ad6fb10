"""The tables. One class per noun, named ``<Noun>Row`` (the GraphQL type and the domain
keep the plain noun); the service modules of api/db query them. In modules by concern,
all imported here, so that one import registers every table on ``Base.metadata``
(Alembic reads it) and callers need not know which module holds which.
"""

from api.db.models.allocation import AllocationDeviceRow, AllocationRow, DeviceChangeRow, ProfileRow
from api.db.models.events import EventRow, WebhookDeliveryRow, WebhookRow
from api.db.models.inventory import (
    STATUSES,
    DeviceRow,
    GpuRow,
    InfinibandRow,
    ProjectRow,
    SwitchRow,
    TenantRow,
    namespace_unique,
)
from api.db.models.operations import ApiTokenRow, AuditEventRow, SyncStateRow
from api.db.models.provision import ApprovalPolicyRow, ProvisionRequestRow
from api.db.models.quota import NONE_KEY, QuotaRow

__all__ = [
    "NONE_KEY",
    "STATUSES",
    "AllocationDeviceRow",
    "AllocationRow",
    "ApiTokenRow",
    "ApprovalPolicyRow",
    "AuditEventRow",
    "DeviceChangeRow",
    "DeviceRow",
    "EventRow",
    "GpuRow",
    "InfinibandRow",
    "ProfileRow",
    "ProjectRow",
    "ProvisionRequestRow",
    "QuotaRow",
    "SwitchRow",
    "SyncStateRow",
    "TenantRow",
    "WebhookDeliveryRow",
    "WebhookRow",
    "namespace_unique",
]
