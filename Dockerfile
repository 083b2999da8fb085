# planetd on Debian 12 with Node 20. Debian's yggdrasil is included for interop checks (yggdrasilctl).
# Run with the TUN device and network admin rights, keeping the generated config (and so the key):
#   docker run --cap-add NET_ADMIN --device /dev/net/tun -v planetd:/var/lib/planetd planetd
FROM node:20-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends yggdrasil iproute2 iputils-ping iperf3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/planetd
COPY package.json package-lock.json binding.gyp tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
# `npm ci` builds the native TUN addon (node-gyp; the image has python3, make, g++); ensureBuilt
# compiles dist/ and stamps it so bin/planetd does not rebuild at start; then dev tools go.
RUN npm ci \
 && node --input-type=module -e "import('./bin/ensure-built.mjs').then((m) => m.ensureBuilt())" \
 && npm prune --omit=dev

# Without --config, `planetd run` as root uses /var/lib/planetd/planetd.conf, created on first start.
VOLUME /var/lib/planetd
CMD ["./bin/planetd", "run"]
