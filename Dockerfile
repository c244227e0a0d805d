# One process serves Discord and Telegram: `docker run -e DISCORD_TOKEN=… -e TELEGRAM_BOT_TOKEN=…
#   -v /srv/citywok:/data citywok` with the index in /data/index and the config in /data.
FROM python:3.11-slim

# The system ffmpeg (Debian's, with every decoder) is preferred over the one in the wheel.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY matcher ./matcher
COPY bot ./bot
COPY config ./config
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 citywok

USER citywok
ENV PYTHONUNBUFFERED=1
VOLUME ["/data"]
ENTRYPOINT ["citywok"]
CMD ["run", "--config", "/data/citywok.toml"]
