# The panel's own image: web (gunicorn), Celery workers and beat all run from it.
#
# PYTHON_IMAGE is any Debian bookworm image with Python 3.11: the official python image by
# default; the production-stack test builds it from the lab's Debian base (whose python3 is
# Debian's 3.11). Python packages come from PyPI, or first from wheels in .wheelhouse/ when
# that directory exists; WHEELS_ONLY=1 installs from those wheels alone (no index reached).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=panel.settings \
    PANEL_VAR_DIR=/var/lib/panel PANEL_STATIC_ROOT=/srv/static \
    PYTHONPATH=/srv/panel PATH=/opt/panel/bin:$PATH
# Debian's own python3 keeps venv's ensurepip in python3-venv; the official image has it.
# A fixed uid, so volumes and secret files keep their owner whatever the base image.
RUN set -eux; \
    pkgs="openssh-client rsync"; \
    python3 -c "import ensurepip" 2>/dev/null || pkgs="$pkgs python3-venv"; \
    apt-get update; \
    apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 panel; \
    useradd --system --uid 10001 --gid panel --home-dir /var/lib/panel --no-create-home panel

# The dependencies in their own layer: rebuilt only when pyproject.toml or the wheels change.
# ".wheelhous[e]" matches nothing when the directory is absent (COPY then copies only
# pyproject.toml).
ARG WHEELS_ONLY=
COPY pyproject.toml .wheelhous[e] /tmp/build/
RUN set -eux; \
    python3 -m venv /opt/panel; \
    python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/build/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/build/requirements.txt; \
    /opt/panel/bin/pip install --no-cache-dir --disable-pip-version-check \
        ${WHEELS_ONLY:+--no-index} --find-links /tmp/build -r /tmp/build/requirements.txt; \
    rm -rf /tmp/build

WORKDIR /srv/panel
COPY manage.py ./
COPY templates templates
COPY static static
COPY panel panel
COPY tenants tenants
COPY provisioning provisioning
COPY backups backups
COPY certificates certificates
COPY notifications notifications
# collectstatic imports the settings, which without configuration generate demo keys under
# PANEL_VAR_DIR: those go to a scratch directory that is removed, never into the image.
RUN set -eux; \
    scratch=$(mktemp -d); \
    PANEL_VAR_DIR=$scratch python manage.py collectstatic --noinput -v 0; \
    rm -rf "$scratch"; \
    mkdir -p /var/lib/panel; \
    chown panel:panel /var/lib/panel
USER panel
EXPOSE 8000
CMD ["gunicorn", "panel.wsgi", "-b", "0.0.0.0:8000", "-w", "3", "--threads", "4"]
