# statsfs daemon image. Run with FUSE access:
#   docker run --rm --init --device /dev/fuse --cap-add SYS_ADMIN --security-opt apparmor:unconfined statsfs
# Mirrors scripts/setup.sh: Debian's fuse3 and libfuse3-dev, npm install (builds the addon), tsc.
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends fuse3 libfuse3-dev pkg-config python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/statsfs
COPY package.json package-lock.json binding.gyp tsconfig.json ./
COPY native ./native
RUN npm install --no-audit --no-fund
COPY bin ./bin
COPY src ./src
RUN npx tsc -p tsconfig.json
ENTRYPOINT ["node", "bin/statsfs.js"]
CMD ["mount", "/run/statsfs"]
