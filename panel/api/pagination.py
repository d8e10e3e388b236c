"""Page-number pagination whose bad input is a 400 naming the parameter.

DRF answers any unusable ``?page=`` with 404 "Invalid page."; a page number that is not a
positive whole number is the caller's mistake, so it gets the same 400 as every other numeric
query parameter. A well-formed page past the end still answers 404, as DRF does.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

MAX_PAGE = 10**9


class PanelPagination(PageNumberPagination):
    """DRF's page-number pagination with ``?page=`` checked first."""

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and raw not in self.last_page_strings:
            if not (
                raw.isascii() and raw.isdigit() and len(raw) <= 10 and 1 <= int(raw) <= MAX_PAGE
            ):
                raise ValidationError(
                    {self.page_query_param: [f"Give a page number from 1 to {MAX_PAGE}."]}
                )
        return super().paginate_queryset(queryset, request, view)
