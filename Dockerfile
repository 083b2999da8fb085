# planetd container image. The build makes no network access: it uses the checkout's node_modules
# (run `npm ci` first) and the build image's own Node headers for the TUN addon.
#   buildah build --format docker -t planetd .      (docker format: OCI images cannot carry a HEALTHCHECK)
#   docker run -d --cap-add NET_ADMIN --device /dev/net/tun -v planetd:/var/lib/planetd planetd
# Config: a file mounted at /etc/planetd/planetd.conf, else /var/lib/planetd/planetd.conf, generated
# (with a new key) on first start; keep that volume to keep the node's address.

FROM docker.io/library/node:20-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.build.json binding.gyp README.md ./
COPY node_modules ./node_modules
COPY bin ./bin
COPY scripts ./scripts
COPY src ./src
# Exactly what `npm install -g` would unpack (npm pack runs the TypeScript build as its prepack step),
# then the addon built in place against this image's Node (scripts/build-addon.mjs passes --nodedir,
# so node-gyp downloads nothing), then the runtime dependencies only, without other platforms' prebuilds.
RUN npm pack --offline --silent \
 && mkdir -p /opt/planetd \
 && tar -xzf planetd-*.tgz --strip-components=1 -C /opt/planetd \
 && cd /opt/planetd \
 && PATH="/src/node_modules/.bin:$PATH" node scripts/build-addon.mjs \
 && rm -rf build/Release/obj.target build/Release/.deps \
 && cd /src \
 && npm prune --omit=dev --offline --silent \
 && cp -a node_modules /opt/planetd/ \
 && host="$(node -p 'process.platform + "-" + process.arch')" \
 && find /opt/planetd/node_modules -type d -path '*/prebuilds/*' -prune ! -name "$host" -exec rm -rf {} + \
 && find /opt/planetd/node_modules -type d -empty -delete \
 && mkdir -p /out/usr/local/bin \
 && ln -s /opt/planetd/bin/planetd /opt/planetd/bin/planetctl /out/usr/local/bin/
COPY contrib/container/entrypoint.sh /out/usr/local/bin/planetd-entrypoint

FROM docker.io/library/node:20-bookworm-slim
COPY --from=build /opt/planetd /opt/planetd
COPY --from=build /out/ /
VOLUME /var/lib/planetd
# Healthy while the daemon answers on its admin socket (the default one; set PLANETD_ADMIN when the
# config moves AdminListen).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["planetctl", "getSelf"]
ENTRYPOINT ["planetd-entrypoint"]
CMD []
