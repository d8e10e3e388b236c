"""Writes of the certificates app, split by role (HackSoft's "modules"):

- :mod:`~certificates.services.requests`: what people (audited) and the schedules ask for;
  these start Operations and never do remote work themselves;
- :mod:`~certificates.services.dns_accounts`: provider accounts and zones as platform admins
  record, change and remove them (audited), and an account's connection test;
- :mod:`~certificates.services.dns_records`: managed zones, hostname checks and an instance's
  DNS records at the zone's provider;
- :mod:`~certificates.services.issuance`: ACME account, placeholders, challenge solvers and
  :func:`certificate_obtain`;
- :mod:`~certificates.services.publish`: an instance's proxy site and certificate on its host,
  and the publish/unpublish hooks of the instance lifecycle.

The functions that take an :class:`~panel.operations.OperationContext` run inside the
Operations of ``certificates.operations``. Everything public is importable from here.
"""

from certificates.services.dns_accounts import (
    DnsAccountCheck,
    DnsCheckLine,
    dns_account_check,
    dns_account_create,
    dns_account_delete,
    dns_account_update,
    dns_zone_create,
    dns_zone_delete,
)
from certificates.services.dns_records import (
    dns_publish,
    dns_record_check,
    dns_target,
    dns_unpublish,
    hostname_dns_check,
    hostname_reserved_reason,
    instance_hostname_check,
    zone_for_hostname,
    zone_ref,
)
from certificates.services.issuance import (
    acme_account_for,
    certificate_for_instance,
    certificate_obtain,
    certificate_placeholder_ensure,
    registered_domain,
    renew_after,
)
from certificates.services.publish import (
    certificate_deploy,
    endpoint_check_safely,
    instance_dns_moved_back,
    instance_publish,
    instance_unpublish,
    proxy_site_fence,
    site_deploy,
)
from certificates.services.requests import (
    LIVE_STATUSES,
    certificate_renew,
    certificates_due,
    certificates_renew_due,
    dns_customer_managed_mark,
    dns_customer_records_check,
    dns_update,
    endpoint_check_request,
    endpoints_check_all,
    instance_certificate_renew,
    proxy_deploy,
)

__all__ = [
    "LIVE_STATUSES",
    "DnsAccountCheck",
    "DnsCheckLine",
    "acme_account_for",
    "certificate_deploy",
    "certificate_for_instance",
    "certificate_obtain",
    "certificate_placeholder_ensure",
    "certificate_renew",
    "certificates_due",
    "certificates_renew_due",
    "dns_account_check",
    "dns_account_create",
    "dns_account_delete",
    "dns_account_update",
    "dns_customer_managed_mark",
    "dns_customer_records_check",
    "dns_publish",
    "dns_record_check",
    "dns_target",
    "dns_unpublish",
    "dns_update",
    "dns_zone_create",
    "dns_zone_delete",
    "endpoint_check_request",
    "endpoint_check_safely",
    "endpoints_check_all",
    "hostname_dns_check",
    "hostname_reserved_reason",
    "instance_certificate_renew",
    "instance_hostname_check",
    "instance_dns_moved_back",
    "instance_publish",
    "instance_unpublish",
    "proxy_site_fence",
    "proxy_deploy",
    "registered_domain",
    "renew_after",
    "site_deploy",
    "zone_for_hostname",
    "zone_ref",
]
