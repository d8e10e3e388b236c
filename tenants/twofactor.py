"""Two-factor login (TOTP, django-otp): required for staff, optional for customers.

The authenticator's secret is kept encrypted (:class:`tenants.models.SealedTOTPDevice`).

After the password step, a user with a confirmed TOTP device must enter a code (or one of
their recovery codes) before any page or session API call works; a staff user without a
device is sent to set one up first. API tokens are not affected (they are created from a
verified session).

The second factor cannot be side-stepped with the password alone:

- a password-only session may only *set up a first device*, and only when the user has none
  (the middleware lets ``/account/two-factor/`` through only for such a session);
- replacing or turning off a confirmed device needs a session already verified with that
  device (or a recovery code) **and** the password again;
- a lost device is reset by a platform admin (audited) or got round with a recovery code;
- enrolling, replacing or resetting a device ends the user's other sessions, so a session that
  logged in with the password before the device existed does not outlive it.
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
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp import match_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

from panel.access import access_for_user
from panel.audit import audit_record
from panel.htmx import login_required
from tenants.models import SealedTOTPDevice

# Paths any logged-in session reaches, verified or not. The set-up page is *not* here: the
# middleware lets it through only for a session whose step is "setup" (no device yet).
ALWAYS_ALLOWED = ("/login/", "/logout/", "/static/", "/favicon.ico")
SETUP_PATH = "/account/two-factor/"
RECOVERY_CODE_COUNT = 10
RECOVERY_DEVICE_NAME = "Recovery codes"


def user_needs_setup(user: Any) -> bool:
    """Staff must have a confirmed TOTP device; customers may choose to."""
    if not settings.PANEL_STAFF_REQUIRE_2FA:
        return False
    return access_for_user(user).is_staff_role and not _confirmed(user).exists()


def _confirmed(user: Any) -> Any:
    return SealedTOTPDevice.objects.filter(user=user, confirmed=True)


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
        if step == "setup" and request.path == SETUP_PATH:
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
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
        help_text="The 6-digit code from your authenticator app, or one of your recovery codes.",
    )


class SetupForm(forms.Form):
    """The code of the new device; the password again when it replaces a confirmed one."""

    token = forms.CharField(
        label="Authentication code",
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text="The 6-digit code your authenticator app shows for the new key.",
    )
    password = forms.CharField(
        label="Your password",
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Needed to replace the device you have now.",
    )

    def __init__(self, *args: Any, user: Any, replacing: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.replacing = replacing
        if not replacing:
            del self.fields["password"]

    def clean_password(self) -> str:
        password = self.cleaned_data.get("password", "")
        if self.replacing and not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password


class PasswordForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password


class ResetForm(forms.Form):
    username = forms.CharField(label="Username", max_length=150)
    reason = forms.CharField(
        label="Reason (for the audit log)",
        max_length=200,
        help_text="How you checked that the person asking is the account's owner.",
    )

    def clean_username(self) -> Any:
        name = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=name, is_active=True).first()
        if user is None:
            raise forms.ValidationError("No active user has that username.")
        return user


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or reverse("dashboard")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return reverse("dashboard")
    return target


def _end_other_sessions(user: Any, keep: str | None = None) -> int:
    """Delete the user's database sessions except ``keep``; the number ended.

    Django keeps no index from user to session, so this decodes the live sessions. It runs
    only when a user's second factor changes, which is rare."""
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.session_key == keep:
            continue
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()
            ended += 1
    return ended


@login_required
def otp_verify(request: HttpRequest) -> HttpResponse:
    """Second login step: the code from the user's authenticator, or a recovery code."""
    if not _confirmed(request.user).exists():
        # The device was removed since login: nothing to verify against.
        request.session[SESSION_KEY] = "setup" if user_needs_setup(request.user) else ""
        return redirect(reverse("otp-setup") if request.session[SESSION_KEY] else _next(request))
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(request.user, form.cleaned_data["token"].strip())
        if device is not None and device.confirmed:
            otp_login(request, device)
            if isinstance(device, StaticDevice):
                audit_record(
                    actor=access_for_user(request.user),
                    action="user.recovery_code_used",
                    target=request.user,
                    changes={"left": device.token_set.count()},
                )
                messages.warning(
                    request,
                    "You logged in with a recovery code; it cannot be used again. "
                    "Set up your authenticator again if you lost it.",
                )
            return redirect(_next(request))
        form.add_error("token", "That code is not valid. Check your device's clock and retry.")
    return render(request, "registration/otp_verify.html", {"form": form, "next": _next(request)})


def _qr_svg(uri: str) -> str:
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


def _recovery_codes_left(user: Any) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


@login_required
def otp_setup(request: HttpRequest) -> HttpResponse:
    """Set up the first TOTP device, or replace the confirmed one from a verified session."""
    user = request.user
    replacing = _confirmed(user).exists()
    if replacing and not user.is_verified():
        # A password-only session never touches a confirmed device: it must first prove the
        # second factor (which is what this page would otherwise let it skip).
        return redirect(f"{reverse('otp-verify')}?next={quote(request.get_full_path())}")
    device = SealedTOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = SealedTOTPDevice.objects.create(user=user, name="Authenticator", confirmed=False)
    form = SetupForm(request.POST or None, user=user, replacing=replacing)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"].strip()):
            with transaction.atomic():
                _confirmed(user).delete()
                device.confirmed = True
                device.save(update_fields=["confirmed"])
            otp_login(request, device)
            request.session[SESSION_KEY] = "verify"
            _end_other_sessions(user, keep=request.session.session_key)
            audit_record(
                actor=access_for_user(user),
                action="user.two_factor_replaced" if replacing else "user.two_factor_enabled",
                target=user,
            )
            messages.success(
                request,
                "Your new authenticator replaced the old one."
                if replacing
                else "Two-factor login is on for your account. Make recovery codes below.",
            )
            return redirect(_next(request))
        form.add_error("token", "That code is not valid. Scan the code again and retry.")
    access = access_for_user(user)
    return render(
        request,
        "registration/otp_setup.html",
        {
            "form": form,
            "next": _next(request),
            "qr_svg": _qr_svg(device.config_url),
            "secret": _base32(device),
            "required": user_needs_setup(user),
            "enabled": replacing,
            "can_disable": replacing and not access.is_staff_role,
            "recovery_left": _recovery_codes_left(user) if replacing else 0,
            "recovery_form": PasswordForm(user=user, auto_id="recovery_%s"),
            "disable_form": PasswordForm(user=user, auto_id="disable_%s"),
            "reset_form": ResetForm() if access.is_platform_admin else None,
        },
    )


def _verified_with_password(request: HttpRequest) -> PasswordForm | None:
    """The valid password form of a POST from a verified session, else None."""
    if not request.user.is_verified():
        return None
    form = PasswordForm(request.POST, user=request.user)
    return form if form.is_valid() else None


@login_required
@require_POST
def otp_recovery_codes(request: HttpRequest) -> HttpResponse:
    """Make a new set of recovery codes (the old ones stop working); shown once."""
    user = request.user
    if not _confirmed(user).exists() or _verified_with_password(request) is None:
        messages.error(request, "Enter your password to make recovery codes.")
        return redirect("otp-setup")
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
    audit_record(actor=access_for_user(user), action="user.recovery_codes_created", target=user)
    response = render(request, "registration/otp_recovery_codes.html", {"codes": codes})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def otp_disable(request: HttpRequest) -> HttpResponse:
    """A customer turns two-factor login off (verified session and password); staff cannot."""
    user = request.user
    if access_for_user(user).is_staff_role or not _confirmed(user).exists():
        messages.error(request, "Two-factor login cannot be turned off for this account.")
        return redirect("otp-setup")
    if _verified_with_password(request) is None:
        messages.error(request, "Enter your password to turn two-factor login off.")
        return redirect("otp-setup")
    _remove_devices(user)
    request.session[SESSION_KEY] = ""
    _end_other_sessions(user, keep=request.session.session_key)
    audit_record(actor=access_for_user(user), action="user.two_factor_disabled", target=user)
    messages.success(request, "Two-factor login is off for your account.")
    return redirect("otp-setup")


def _remove_devices(user: Any) -> None:
    with transaction.atomic():
        SealedTOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()


def user_two_factor_reset(*, actor: Any, user: Any, reason: str) -> int:
    """A platform admin removes ``user``'s devices (lost phone): audited, sessions ended.

    The user's next login sets up a new device (staff must; customers may). Returns the
    number of the user's sessions that were ended."""
    _remove_devices(user)
    ended = _end_other_sessions(user)
    audit_record(
        actor=actor,
        action="user.two_factor_reset",
        target=user,
        changes={"reason": reason, "sessions_ended": ended},
    )
    return ended


@login_required
@require_POST
def otp_reset(request: HttpRequest) -> HttpResponse:
    """Platform admins reset another user's second factor (from a verified session)."""
    access = access_for_user(request.user)
    if not access.is_platform_admin or not request.user.is_verified():
        if not access.is_platform_admin:
            return render(request, "403.html", status=403)
        messages.error(request, "Verify your own second factor first.")
        return redirect("otp-setup")
    form = ResetForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
        return redirect("otp-setup")
    target = form.cleaned_data["username"]
    if target.pk == request.user.pk:
        messages.error(request, "Replace your own device above instead.")
        return redirect("otp-setup")
    user_two_factor_reset(actor=access, user=target, reason=form.cleaned_data["reason"])
    messages.success(
        request, f"Two-factor login of {target.get_username()} was reset; they set it up again."
    )
    return redirect("otp-setup")


def _base32(device: SealedTOTPDevice) -> str:
    import base64

    return base64.b32encode(device.bin_key).decode().rstrip("=")
