# panel-stack-test/postgres:15: the lab's PostgreSQL image plus the official image's
# <VARIABLE>_FILE forms (POSTGRES_PASSWORD_FILE, ...), which the stack uses for its
# password secret and the lab's entrypoint does not read.
ARG BASE=panel-lab/postgres:15
FROM ${BASE}
COPY postgres-file-env /usr/local/bin/postgres-file-env
RUN chmod 755 /usr/local/bin/postgres-file-env
ENTRYPOINT ["/usr/local/bin/postgres-file-env"]
CMD ["postgres"]
