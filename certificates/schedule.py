"""Periodic tasks of the certificates app (merged into CELERY_BEAT_SCHEDULE by settings).

Renewal decisions are made per day (a third of the lifetime left); the sweep runs hourly so a
failed attempt is retried after its backoff (1 h, 2 h, 4 h, ... at most a day) rather than a
day later.
"""

SCHEDULE = {
    "certificates-renew-due": {
        "task": "certificates.tasks.certificates_renew_due",
        "schedule": 3600.0,
    },
    "dns-customer-records-check": {
        "task": "certificates.tasks.dns_customer_records_check",
        "schedule": 900.0,
    },
    "endpoints-check": {"task": "certificates.tasks.endpoints_check", "schedule": 6 * 3600.0},
}
