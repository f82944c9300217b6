#!/usr/bin/env bash
# Makes the Dockerfile's base image (node:<major>-slim's stand-in) on a machine that reaches
# no image registry, only Debian's archive and the npm registry:
#   - a Debian root from Debian's packages (debootstrap --variant=minbase), with the suite and
#     mirror this machine's apt already uses (/etc/apt/sources.list.d/*.sources or
#     /etc/apt/sources.list), so it is the same Debian release the official node:*-slim is
#     built on (bookworm here), fetched from the same place as any apt-get;
#   - Node's own binary from the npm registry: node-linux-<arch>@<major>, the package that
#     `npm i node@<major>` installs its binary from;
#   - npm from the npm registry (`npm` package), under /usr/local as in the official image;
#   - a `node` user and group, uid and gid 1000 as in the official image (the Dockerfile's
#     `USER node`);
#   - where this machine reaches the registries through a TLS proxy with its own authority
#     (NODE_EXTRA_CA_CERTS, or npm's `cafile`), that bundle as NODE_EXTRA_CA_CERTS, so the
#     build's `npm ci` trusts what the host's npm trusts. The official image has no such
#     setting; this stand-in is for this machine's builds only.
# The result is `docker import`ed and tagged TAG. Nothing is built when TAG already exists,
# so CI pays for debootstrap (about 2.5 minutes) once per machine.
#
#   scripts/base-image.sh TAG NODE_MAJOR
set -euo pipefail

tag=${1:?usage: scripts/base-image.sh TAG NODE_MAJOR}
major=${2:?usage: scripts/base-image.sh TAG NODE_MAJOR}

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag: already here ($(docker run --rm --network host "$tag" node --version)), kept"
  exit 0
fi

# The suite and mirror of the machine's main Debian source (not -updates or -security).
apt_source() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk '
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-/) suite = $i }
      /^$/ { if (uri != "" && suite != "" && uri !~ /security/) { print suite, uri; exit } uri = ""; suite = "" }
      END { if (uri != "" && suite != "" && uri !~ /security/) print suite, uri }
    ' "$file" | head -1
  done
  if [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" && $3 !~ /-/ && $2 !~ /security/ { print $3, $2; exit }' /etc/apt/sources.list
  fi
}
read -r suite mirror < <(apt_source | head -1) || true
if [ -z "${suite:-}" ] || [ -z "${mirror:-}" ]; then
  echo "base image: no Debian suite and mirror found in /etc/apt" >&2
  exit 1
fi

case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "base image: no Node package for $(uname -m)" >&2; exit 1 ;;
esac

work=$(mktemp -d /var/tmp/assent-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "base image $tag: debootstrap --variant=minbase $suite from $mirror"
started=$SECONDS
# libatomic1: Node's binary links it (node:*-slim has it too).
debootstrap --variant=minbase --include=libatomic1 "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  exit 1
}
echo "base image $tag: Debian root in $((SECONDS - started)) s"

# The version `npm i node@<major>` would install, and the binary package its install script
# fetches; `npm pack` downloads a tarball as the registry serves it, running none of its scripts.
version=$(cd "$work" && npm pack --dry-run --json "node@$major" 2>/dev/null | node -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8"))[0].version)')
(cd "$work" && npm pack --silent "node-linux-$arch@$version" npm@latest >/dev/null)
mkdir -p "$work/node" "$rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$work"/node-linux-"$arch"-*.tgz -C "$work/node"
install -m 0755 "$work/node/package/bin/node" "$rootfs/usr/local/bin/node"
tar -xzf "$work"/npm-*.tgz --strip-components=1 -C "$rootfs/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"

chroot "$rootfs" groupadd --gid 1000 node
chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
# What a slim image leaves out: apt's lists and caches, documentation.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*

changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
ca_bundle=${NODE_EXTRA_CA_CERTS:-$(npm config get cafile 2>/dev/null || true)}
if [ -n "$ca_bundle" ] && [ "$ca_bundle" != null ] && [ -f "$ca_bundle" ]; then
  mkdir -p "$rootfs/etc/ssl/certs"
  cp "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  changes+=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
  echo "base image $tag: trusts this machine's certificate bundle ($ca_bundle)"
fi

tar -C "$rootfs" --numeric-owner -c . | docker import "${changes[@]}" \
  --change 'CMD ["node"]' \
  --message "Debian $suite minbase with node-linux-$arch@$version and npm, from their registries" \
  - "$tag" >/dev/null
echo "base image $tag: node $(docker run --rm --network host "$tag" node --version), npm $(docker run --rm --network host "$tag" npm --version), in $((SECONDS - started)) s"
