FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY workers ./workers
COPY schemas ./schemas
COPY examples ./examples
RUN pip install --no-cache-dir -e .
ENV SYNDICATE_API_HOST=0.0.0.0 SYNDICATE_DATA_DIR=/data
VOLUME /data
