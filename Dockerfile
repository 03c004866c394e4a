# auditsink's container image, the one `auditsink setup manifests` runs by default:
#   docker build -t auditsink:0.1.0 .
# A wheel is built in one stage and installed into a clean one, so the image holds no compiler,
# no source tree and no pip cache.
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels auditsink \
 && rm -rf /wheels \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/auditsink \
      --shell /usr/sbin/nologin auditsink \
 && install -d -o auditsink -g auditsink -m 0700 /var/lib/auditsink
# The manifests mount the root filesystem read-only: nothing may write bytecode, and SQLite's
# temporary files (large sorts) go to the data volume instead of /tmp.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 SQLITE_TMPDIR=/var/lib/auditsink \
    TMPDIR=/var/lib/auditsink
WORKDIR /var/lib/auditsink
# Not root by default; the static pod sets runAsUser 0 to read the root-only (0600) key and
# token files on the node, with every capability dropped.
USER 10001:10001
EXPOSE 8443 8081
ENTRYPOINT ["auditsink"]
CMD ["--help"]
