# The Experience Monitor image: `expmon` on Python 3.11, no Kafka inside (use the compose
# file's broker or EXPMON_KAFKA_BOOTSTRAP).
FROM python:3.11.7-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY expmon ./expmon
COPY streams ./streams
COPY schemas ./schemas
RUN pip install --no-cache-dir . && useradd --create-home expmon
USER expmon
ENV EXPMON_METRICS_HOST=0.0.0.0 EXPMON_STATE_DIR=/home/expmon/state
EXPOSE 9477
ENTRYPOINT ["expmon"]
CMD ["worker"]
