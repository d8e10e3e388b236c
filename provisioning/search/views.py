"""The staff search's results page (support staff and platform admins; 404 for customers)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from panel.access import access_for
from panel.htmx import login_required
from provisioning.search.selectors import SEARCH_LIMIT, SEARCH_MIN_LENGTH, staff_search

QUERY_MAX_LENGTH = 100


@login_required
@require_GET
def staff_search_view(request: HttpRequest) -> HttpResponse:
    """Staff: instances, tenants and hosts matching ``q``, across every tenant."""
    access = access_for(request)
    if not access.is_staff_role:
        raise Http404  # a staff page: customers do not learn it exists
    q = request.GET.get("q", "")[:QUERY_MAX_LENGTH]
    context = {
        "q": q.strip(),
        "result": staff_search(access, q),
        "limit": SEARCH_LIMIT,
        "min_length": SEARCH_MIN_LENGTH,
    }
    return render(request, "provisioning/staff_search.html", context)
