"""Page-number pagination whose bad input is a 400 naming the parameter.

DRF answers any unusable ``?page=`` with 404 "Invalid page."; a page number that is not a
positive whole number is the caller's mistake, so it gets the same 400 as every other numeric
query parameter. A well-formed page past the end still answers 404, as DRF does.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.paginator import Paginator as DjangoPaginator
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


class _KnownCountPaginator(DjangoPaginator):
    """Django's paginator told the number of rows instead of counting them."""

    def __init__(self, object_list: Any, per_page: int, *, known_count: int, **kwargs: Any) -> None:
        super().__init__(object_list, per_page, **kwargs)
        self.__dict__["count"] = known_count  # what the cached_property would have stored


class KnownCountPagination(PanelPagination):
    """:class:`PanelPagination` that takes the number of rows from the view when it knows it
    without a ``COUNT(*)``: ``view.rows_known()`` returns it (a materialised count, for a list
    with no filter) or None (then the rows are counted as usual). The answer is the same."""

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        rows_known = getattr(view, "rows_known", None)
        known = rows_known() if rows_known is not None else None
        # DRF calls django_paginator_class(queryset, page_size): a class, or one with the count.
        paginator: Any = (
            DjangoPaginator if known is None else partial(_KnownCountPaginator, known_count=known)
        )
        self.django_paginator_class = paginator
        return super().paginate_queryset(queryset, request, view)
