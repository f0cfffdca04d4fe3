# Sluice container image: built in one stage, shipped in a slim one that runs as a non-root user with
# tini as PID 1.
#   docker build -t sluice .
#   docker run --ulimit nofile=1048576:1048576 -p 8080:8080 -v $PWD/config/sluice.yaml:/etc/sluice/sluice.yaml:ro sluice
# Each proxied WebSocket holds two file descriptors: raise the open-files limit (--ulimit nofile=…).
# The admin listener (:9090) has no authentication: publish it only to your monitoring network.
# test/image.test.ts runs this file's final stage (its COPY layout, WORKDIR, ENV, ENTRYPOINT, CMD and
# HEALTHCHECK) without a container engine; keep the instructions simple enough for it to read.

FROM node:20-bookworm-slim AS build
# The native upstream leg (native/) is compiled with node-gyp; without these the build falls back
# to the JavaScript leg.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
COPY native ./native
COPY src ./src
COPY loadtest ./loadtest
COPY bench ./bench
COPY scripts ./scripts
COPY test ./test
# npm ci runs the prepare script, which compiles TypeScript into dist/. Then: production dependencies
# only, and of uWebSockets.js's prebuilt binaries (one per platform and Node ABI, 92 MB in all) only
# the one this image loads.
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund \
 && keep="uws_$(node -p 'process.platform + "_" + process.arch + "_" + process.versions.modules').node" \
 && test -f "node_modules/uWebSockets.js/binaries/$keep" \
 && find node_modules/uWebSockets.js/binaries -name 'uws_*.node' ! -name "$keep" -delete

FROM node:20-bookworm-slim
# tini as PID 1: the kernel gives PID 1 no default signal handlers, and node is no init. tini passes
# SIGTERM/SIGINT/SIGHUP on to Sluice (graceful drain, reload) and reaps orphaned children.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /opt/sluice
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
# The load generator and the echo backend (config/kubernetes/base/backend.yaml runs it as the example pool).
COPY --from=build /src/dist/loadtest ./dist/loadtest
COPY --from=build /src/native/index.js ./native/index.js
COPY --from=build /src/native/build/Release/sluice_upstream.node ./native/build/Release/sluice_upstream.node
COPY bin ./bin
COPY config/sluice.yaml /etc/sluice/sluice.yaml
# The image's "node" user, by number so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
# 8080: the default entry point; 9090: the admin listener (admin.address: /metrics, /health, /ready).
EXPOSE 8080 9090
# Liveness from the admin listener: 200 while the primary runs and every worker's event loop ticks.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/health').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "bin/sluice.js"]
CMD ["run", "--config", "/etc/sluice/sluice.yaml"]
