# panel-stack-test/redis:7: Debian's redis-server (7.0 in bookworm) in place of the official
# redis:7 image, for tests/hardening/test_production_stack.py (no registry is reachable).
# It keeps the official image's contract the stack relies on: `redis-server ...` as the
# command, data in /data (the working directory), redis-cli for the health check, and
# protected mode off (the official binary is built so; other containers must connect).
ARG BASE=panel-lab/base:bookworm
FROM ${BASE}
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends redis-server; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /data; \
    chown redis:redis /data; \
    redis-server --version; \
    redis-cli --version
COPY redis-entrypoint /usr/local/bin/redis-entrypoint
RUN chmod 755 /usr/local/bin/redis-entrypoint
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint"]
CMD ["redis-server"]
