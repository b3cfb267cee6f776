# One image for every Turnout role: the container's command picks it
# (`router`, `worker --model ID`, `sink`, `simulator`, `topics create`, `migrate`, …),
# exactly as on a developer's machine. See docker-compose.yml for the production topology.
#
#   docker build -t turnout .
#   docker run --rm turnout --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Only what the package is built from (no .venv, no .git, no local state).
COPY pyproject.toml README.md ./
COPY turnout/ turnout/
COPY schemas/ schemas/
COPY streams/ streams/
COPY consumers/ consumers/
COPY producers/ producers/
COPY analytics/ analytics/
COPY gateway/ gateway/

RUN pip install . \
    && useradd --create-home --uid 10001 turnout \
    && mkdir -p /etc/turnout

# Processes write nothing but temporary files; run them unprivileged.
USER turnout
WORKDIR /home/turnout

ENTRYPOINT ["turnout"]
CMD ["--help"]
