# Kumo: one image for every component (`kumo broker`, `kumo bridge`, `kumo sim`, …).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin kumo

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/kumo kumo \
 && mkdir -p /var/lib/kumo/pki /var/lib/kumo/enrol /var/lib/kumo/sim-devices \
 && chown -R kumo:kumo /var/lib/kumo
COPY --from=build /src/target/release/kumo /usr/local/bin/kumo
USER kumo
WORKDIR /var/lib/kumo
ENV KUMO__DATA_DIR=/var/lib/kumo
ENTRYPOINT ["kumo"]
CMD ["--help"]
