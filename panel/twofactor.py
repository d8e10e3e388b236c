"""Two-factor login (TOTP, django-otp): required for staff, optional for customers.

After the password step, a user with a confirmed TOTP device must enter a code before any
page or session API call works; a staff user without a device is sent to set one up first.
API tokens are not affected (they are created from a verified session).
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login
from django_otp import match_token
from django_otp.plugins.otp_totp.models import TOTPDevice

from panel.access import access_for_user
from panel.audit import audit_record

ALWAYS_ALLOWED = ("/login/", "/logout/", "/static/", "/account/two-factor/", "/favicon.ico")


def user_needs_setup(user: Any) -> bool:
    """Staff must have a confirmed TOTP device; customers may choose to."""
    if not settings.PANEL_STAFF_REQUIRE_2FA:
        return False
    return access_for_user(user).is_staff_role and not _confirmed(user).exists()


def _confirmed(user: Any) -> Any:
    return TOTPDevice.objects.filter(user=user, confirmed=True)


SESSION_KEY = "panel_two_factor"  # "verify", "setup" or "" for this session's login


def two_factor_on_login(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    """Decide once, at login, what second step this session needs (no query per request)."""
    if request is None or not hasattr(request, "session"):
        return
    if _confirmed(user).exists():
        request.session[SESSION_KEY] = "verify"
    elif user_needs_setup(user):
        request.session[SESSION_KEY] = "setup"
    else:
        request.session[SESSION_KEY] = ""


class TwoFactorMiddleware:
    """Keep a password-only session out of everything until its second factor is verified."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        step = request.session.get(SESSION_KEY, "")
        if not step or request.path.startswith(ALWAYS_ALLOWED) or user.is_verified():
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return JsonResponse(
                {"detail": "Complete two-factor login in the browser first."}, status=403
            )
        target = reverse("otp-verify" if step == "verify" else "otp-setup")
        return redirect(f"{target}?next={quote(request.get_full_path())}")


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Authentication code",
        max_length=8,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
        help_text="The 6-digit code from your authenticator app.",
    )


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or reverse("dashboard")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return reverse("dashboard")
    return target


@login_required
def otp_verify(request: HttpRequest) -> HttpResponse:
    """Second login step: the code from the user's authenticator."""
    if not _confirmed(request.user).exists():
        # The device was removed since login: nothing to verify against.
        request.session[SESSION_KEY] = "setup" if user_needs_setup(request.user) else ""
        return redirect(reverse("otp-setup") if request.session[SESSION_KEY] else _next(request))
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(request.user, form.cleaned_data["token"].strip())
        if device is not None and device.confirmed:
            otp_login(request, device)
            return redirect(_next(request))
        form.add_error("token", "That code is not valid. Check your device's clock and retry.")
    return render(request, "registration/otp_verify.html", {"form": form, "next": _next(request)})


def _qr_svg(uri: str) -> str:
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


@login_required
def otp_setup(request: HttpRequest) -> HttpResponse:
    """Set up (or replace) the user's TOTP device; confirmed by entering one code."""
    device = TOTPDevice.objects.filter(user=request.user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=request.user, name="Authenticator", confirmed=False)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"].strip()):
            _confirmed(request.user).delete()
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            audit_record(
                actor=access_for_user(request.user), action="user.two_factor_enabled",
                target=request.user,
            )
            messages.success(request, "Two-factor login is on for your account.")
            return redirect(_next(request))
        form.add_error("token", "That code is not valid. Scan the code again and retry.")
    uri = device.config_url
    return render(
        request,
        "registration/otp_setup.html",
        {
            "form": form,
            "next": _next(request),
            "qr_svg": _qr_svg(uri),
            "secret": _base32(device),
            "required": user_needs_setup(request.user),
            "enabled": _confirmed(request.user).exists(),
        },
    )


def _base32(device: TOTPDevice) -> str:
    import base64

    return base64.b32encode(device.bin_key).decode().rstrip("=")
