"""UI route of the staff search."""

from django.urls import path

from provisioning.search import views

app_name = "search"
urlpatterns = [
    path("staff/search/", views.staff_search_view, name="staff_search"),
]
