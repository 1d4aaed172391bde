# The Experience Monitor image: `expmon` on Python 3.11, no Kafka inside (use the compose
# file's broker or EXPMON_KAFKA_BOOTSTRAP). `docker build -t expmon:0.5.0 .`
# The same image runs `worker`, `collect`, `simulate` and `topics`; docker-compose.yml gives the
# worker its health check (/readyz), which the other verbs have no endpoint for.
FROM python:3.11.7-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY expmon ./expmon
COPY streams ./streams
COPY schemas ./schemas
# the default alert rules ship in the `alerts` package (alerts/defaults.yml)
COPY alerts ./alerts
RUN pip install --no-cache-dir . && useradd --create-home expmon
USER expmon
ENV EXPMON_METRICS_HOST=0.0.0.0 EXPMON_STATE_DIR=/home/expmon/state PYTHONUNBUFFERED=1
EXPOSE 9477 9478
ENTRYPOINT ["expmon"]
CMD ["worker"]
