# The cto-dagster user-code image: this package, git, and the agent CLIs you use.
#   docker build -t ghcr.io/your-org/cto-dagster:0.1.0 . && docker push ghcr.io/your-org/cto-dagster:0.1.0
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Agent CLIs: uncomment what your projects use (they need Node.js).
# RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm \
#  && npm install -g @anthropic-ai/claude-code @openai/codex && rm -rf /var/lib/apt/lists/*

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /opt/cto-dagster
COPY pyproject.toml uv.lock README.md ./
# .pyc files in the image: each step pod imports Dagster at start, and compiling it costs seconds
RUN uv sync --frozen --no-dev --no-install-project --compile-bytecode
COPY cto_dagster ./cto_dagster
RUN uv sync --frozen --no-dev --compile-bytecode

RUN useradd --uid 1000 --create-home agent && mkdir -p /tmp/cto-dagster-cache \
 && chown agent /tmp/cto-dagster-cache
USER 1000
ENV PATH="/opt/cto-dagster/.venv/bin:$PATH" \
    GIT_TERMINAL_PROMPT=0
EXPOSE 3030
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "cto_dagster.definitions"]
