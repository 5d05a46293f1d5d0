# syntax=docker/dockerfile:1
# Untested here (no Docker engine on our build machines); see README "Docker".

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
ENV NODE_ENV=production \
    REBOUND_STORE_PATH=/data/rebound.sqlite \
    REBOUND_SUBMISSION_HOST=0.0.0.0
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --from=build --chown=root:root /app/config ./config
COPY --from=build --chown=root:root /app/panel ./panel
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
EXPOSE 2525
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "--max-semi-space-size=8", "/app/dist/cli.js"]
CMD ["start"]
