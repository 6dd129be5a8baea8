# chat-relay: multi-stage build. The runtime image holds the binary (Swift runtime linked in
# statically), libhiredis and nothing else it does not need.
#
#   docker build -t chat-relay .
#   docker run -p 8080:8080 chat-relay                        # one node, embedded broker
#   docker run -e REDIS_URL=redis://redis:6379 chat-relay     # a cluster node
#
# Build arguments choose the base images (for registries mirrors, or a locally built Debian);
# BINARY_STAGE=<image with /chat-relay> skips the Swift build and takes a prebuilt binary.
ARG BUILDER_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG BINARY_STAGE=build

FROM ${BUILDER_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libhiredis-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product chat-relay --static-swift-stdlib \
 && cp "$(swift build -c release --show-bin-path)/chat-relay" /chat-relay \
 && strip /chat-relay

FROM ${BINARY_STAGE} AS binary

FROM ${RUNTIME_IMAGE} AS runtime
# hiredis is all the binary needs beyond libc (installed unless the base image has it already).
RUN (dpkg-query -W libhiredis0.14 >/dev/null 2>&1 \
     || (apt-get update && apt-get install -y --no-install-recommends libhiredis0.14 && rm -rf /var/lib/apt/lists/*)) \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin relay
COPY --from=binary /chat-relay /usr/local/bin/chat-relay
COPY deploy/healthcheck.sh /usr/local/bin/relay-healthcheck
USER relay
ENV HOST=0.0.0.0 PORT=8080 LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=2 CMD ["/usr/local/bin/relay-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/chat-relay"]
CMD ["serve"]
