# The panel's own image: web (gunicorn), Celery worker and beat all run from it.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=panel.settings \
    PANEL_VAR_DIR=/var/lib/panel PANEL_STATIC_ROOT=/srv/static
RUN apt-get update && apt-get install -y --no-install-recommends openssh-client rsync \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/panel panel
WORKDIR /srv/panel
COPY pyproject.toml README.md ./
COPY panel panel
COPY tenants tenants
COPY provisioning provisioning
COPY backups backups
COPY certificates certificates
COPY templates templates
COPY static static
COPY manage.py ./
RUN pip install --no-cache-dir . && python manage.py collectstatic --noinput \
    && mkdir -p /var/lib/panel && chown panel /var/lib/panel
USER panel
EXPOSE 8000
CMD ["gunicorn", "panel.wsgi", "-b", "0.0.0.0:8000", "-w", "3", "--threads", "4"]
