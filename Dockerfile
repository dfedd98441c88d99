# Build stage: release binary with the locked dependency set.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
COPY benches ./benches
RUN cargo build --release --locked --bin larder

# Runtime stage: a small Debian with the binary, running as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin larder
COPY --from=build /src/target/release/larder /usr/local/bin/larder
COPY config/larder.toml /etc/larder/larder.toml
USER larder
EXPOSE 8080 9091
ENTRYPOINT ["/usr/local/bin/larder"]
CMD ["serve", "--config", "/etc/larder/larder.toml"]
