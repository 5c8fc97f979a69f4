# Multi-stage build of the operator: a small, non-root runtime image.
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other member (the testbed) must be present for cargo to read the workspace;
# only the operator's package is built, so none of it reaches the image.
COPY testbed ./testbed
RUN cargo build --release --locked -p kafka-operator --bin kafka-operator \
 && strip target/release/kafka-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/kafka-operator /usr/local/bin/kafka-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kafka-operator"]
CMD ["run", "--metrics-addr", "0.0.0.0:8080"]
