# syntax=docker/dockerfile:1
# Not built here (no Docker engine on our build machines); its start command and environment are
# tested outside a container (test/deployment.test.ts); see README "Docker".

# --- build: compile better-sqlite3 and the TypeScript, then drop dev dependencies ---
FROM node:24-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY config ./config
COPY panel ./panel
# `npm ci` runs the prepare script (tsc), which needs the dev dependencies; prune them after.
RUN npm ci --no-audit --no-fund \
 && node -e "require('better-sqlite3')" \
 && npm prune --omit=dev --no-audit --no-fund

# --- run: only what `rebound start` needs, as the unprivileged node user ---
FROM node:24-bookworm-slim
# Every listener on all of the container's interfaces (the container's network is the boundary;
# publish only the ports you mean to), each address and port overridable from the environment.
# The admin API and panel need a token (admin.tokens, or the one generated in /data/admin-token).
ENV NODE_ENV=production \
    REBOUND_STORE_PATH=/data/rebound.sqlite \
    REBOUND_SUBMISSION_HOST=0.0.0.0 \
    REBOUND_SUBMISSION_PORT=2525 \
    REBOUND_INBOUND_HOST=0.0.0.0 \
    REBOUND_INBOUND_PORT=2526 \
    REBOUND_ADMIN_HOST=0.0.0.0 \
    REBOUND_ADMIN_PORT=8025
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --from=build --chown=root:root /app/config ./config
COPY --from=build --chown=root:root /app/panel ./panel
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
# submission, inbound (the return-path MX: publish it as 25), admin API and panel
EXPOSE 2525 2526 8025
STOPSIGNAL SIGTERM
# /healthz of the admin server, asked on loopback by the relay's own CLI (no curl in this image).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["node", "/app/dist/cli.js", "health"]
ENTRYPOINT ["node", "--max-semi-space-size=8", "/app/dist/cli.js"]
CMD ["start"]
