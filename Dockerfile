# syntax=docker/dockerfile:1

# Build: the native addon (against libnftnl/libmnl headers), the TypeScript and its bundle
# (dist/bundle/, what runs: scripts/bundle.mjs), then production dependencies only.
FROM node:20-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libnftnl-dev libmnl-dev build-essential python3 pkg-config \
      clang llvm libbpf-dev bpftool \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Dependencies first, so source edits reuse this layer. binding.gyp is not copied yet: with it
# present, npm would build the addon during `npm ci`, before its sources are here.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY binding.gyp tsconfig.json ./
COPY native ./native
COPY src ./src
COPY scripts/bundle.mjs ./scripts/bundle.mjs
RUN npm run build && npm prune --omit=dev

# Runtime: the shared libraries the addon links, and every program kubenft runs (test/image-programs
# checks the list against what a traced agent executes): nft (explain's rule texts), iptables
# (--proxy-mode=iptables, cleanup after other modes), conntrack (stale UDP flows), iproute2's ip
# (--cluster-dns's link and addresses);
# ipset and ipvsadm remove kube-proxy's IPVS leftovers (its ip sets, virtual services). The ingress's default certificate is made in-process.
FROM node:20-bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libnftnl11 libmnl0 libbpf1 nftables iptables conntrack iproute2 ipset ipvsadm \
      haproxy \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The addon is found relative to the directory holding package.json (src/kernel/native.ts).
COPY --from=build /app/build/Release/kubenft_native.node ./build/Release/kubenft_native.node
# Pod specs name the command as kube-proxy's do (`kubenft --config=...`), which replaces the entrypoint.
RUN printf '#!/bin/sh\nexec node /app/dist/bundle/main.js "$@"\n' > /usr/local/bin/kubenft \
 && chmod 0755 /usr/local/bin/kubenft
ENTRYPOINT ["node", "/app/dist/bundle/main.js"]
