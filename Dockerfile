# tipbox: the same steps as the tested install (pip install, compile the catalogs, tipbox serve).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --create-home --home-dir /home/tipbox tipbox \
 && install -d -o tipbox -g tipbox -m 0700 /var/lib/tipbox  # the answers store (deploy/docker-compose.yml)

COPY . /src
RUN pip install babel \
 && pybabel compile --use-fuzzy --domain messages --directory /src/app/locales \
 && pip install /src \
 && rm -rf /src

USER tipbox
WORKDIR /home/tipbox
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["tipbox", "serve", "--host", "0.0.0.0", "--port", "8000"]
