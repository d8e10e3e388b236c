"""Logging filters that keep ordinary events to one line (see ``LOGGING`` in settings)."""

from __future__ import annotations

import logging


class ClientErrorFilter(logging.Filter):
    """A request answered 4xx (a 403 for a viewer's write, a 404 for another tenant's object)
    is an ordinary event: one line, without the exception Django attaches to it.

    ``django.utils.log.log_response`` passes the PermissionDenied (or the bad request) it is
    logging as ``exc_info``, so the line came with a full traceback; 5xx records keep theirs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True


class BrokerHostnameFilter(logging.Filter):
    """Drop kombu's warning that the broker URL names no host: the embedded filesystem broker
    (``filesystem://``) has none to name, and every process and pool child said so at start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No hostname was supplied.")
