# larder as a container: `docker build -t larder .`, or `docker compose up` (compose.yaml).
#
# Build stage: the release binary and the example origin, with the locked dependency set.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
COPY benches ./benches
RUN cargo build --release --locked --bin larder --example origin

# Runtime stage: a small Debian with the binaries and CA certificates (HTTPS upstreams,
# rediss://), running as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin larder \
    && mkdir -p /var/cache/larder && chown larder /var/cache/larder
COPY --from=build /src/target/release/larder /usr/local/bin/larder
COPY --from=build /src/target/release/examples/origin /usr/local/bin/larder-example-origin
# The default config listens on every interface and reads the upstream, the Redis URL and
# password, ttls and bounds from the environment (see the file).
COPY config/docker.toml /etc/larder/larder.toml
USER larder
# The disk tier's files, when `[store.disk] path = "/var/cache/larder"` is configured.
VOLUME ["/var/cache/larder"]
EXPOSE 8080 9091
ENV LARDER_ADMIN_URL=http://127.0.0.1:9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/larder", "ctl", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/larder"]
CMD ["serve", "--config", "/etc/larder/larder.toml"]
