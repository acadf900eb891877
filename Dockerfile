# The api and worker image (docker-compose.yml runs `kwanus api` and `kwanus worker` from it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md worker.py ./
COPY app ./app
COPY kwanus ./kwanus
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY policy ./policy
COPY store ./store
RUN pip install . && useradd --create-home --uid 10001 kwanus
USER kwanus
ENV KWANUS_STATE_DIR=/home/kwanus/state
EXPOSE 8000
CMD ["kwanus", "api"]
