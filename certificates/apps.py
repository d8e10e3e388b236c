"""The certificates app: DNS zones and records, ACME certificates and the reverse proxy."""

from django.apps import AppConfig

# (name, task, seconds). Renewal decisions are made per day (a third of the lifetime left); the
# sweep runs hourly so a failed attempt is retried after its backoff (1 h, 2 h, 4 h, ... at most
# a day) rather than a day later.
PERIODIC_JOBS = (
    ("certificates-renew-due", "certificates.tasks.certificates_renew_due", 3600.0),
    ("dns-customer-records-check", "certificates.tasks.dns_customer_records_check", 900.0),
    ("endpoints-check", "certificates.tasks.endpoints_check", 6 * 3600.0),
)


class CertificatesConfig(AppConfig):
    """DNS zones and records, ACME certificates and the reverse proxy."""

    name = "certificates"

    def ready(self) -> None:
        from certificates import operations, services  # noqa: F401 - operations registers kinds
        from certificates.selectors import certificates_expiring
        from panel.registry import hook_register, panel_register, periodic_job_register, registry

        # Publish (DNS, certificate, proxy site) after a create; unpublish on delete.
        hook_register("instance_hooks", "publish", services.instance_publish)
        hook_register("instance_hooks", "unpublish", services.instance_unpublish)
        # An evacuation that failed after publishing on its target points DNS back.
        hook_register("instance_hooks", "moved_back", services.instance_dns_moved_back)
        # A returning host's proxy drops the sites (and keys) of instances evacuated from it.
        hook_register("host_hooks", "fence", services.proxy_site_fence)
        # Expiry alerts and the instance's certificate come before the other apps' panels.
        panel_register("dashboard_panels", "certificates/_dashboard_alerts.html", order=10)
        panel_register("instance_panels", "certificates/_instance_certificates.html", order=10)
        registry["summary_counts"]["certificates_expiring"] = lambda access: certificates_expiring(
            access
        ).count()
        for name, task, seconds in PERIODIC_JOBS:
            periodic_job_register(name, task=task, seconds=seconds)
