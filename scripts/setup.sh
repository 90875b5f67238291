#!/usr/bin/env bash
# Makes a fresh Debian machine ready to run kubenft: system packages, npm packages, the native
# addon and the TypeScript build. Every step is skipped when it is already done, so the README's
# commands can always run it first.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libnftnl-dev libmnl-dev pkg-config nftables iproute2 iptables conntrack bind9-dnsutils)
# Migration from kube-proxy: its IPVS mode's ip sets, which the migration tests create and kubenft removes.
packages+=(ipset)
# Socket LB: the BPF programs are compiled at build time and embedded in the addon (bpftool gen skeleton).
packages+=(clang llvm libbpf-dev bpftool)
# The ingress tests make certificates with openssl and use curl (HTTP/2 via its nghttp2);
# test/kernel/image-programs traces what the agent executes with strace.
packages+=(openssl curl strace)
# The ingress request-target test runs nginx beside the proxy as the reference for routing.
packages+=(nginx)
# --ingress-dataplane=haproxy, and the ingress tests run against it (test/kernel/ingress-*.haproxy.test.ts).
packages+=(haproxy)
# modprobe, for nf_conntrack below
packages+=(kmod)
sudo_if_needed=(); [ "$(id -u)" -eq 0 ] || sudo_if_needed=(sudo)
# The manifest tests ask kubectl what it would apply: Debian's kubernetes-client, unless a kubectl is there.
command -v kubectl >/dev/null || packages+=(kubernetes-client)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  "${sudo_if_needed[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_if_needed[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The agent sets the conntrack sysctls as it starts, as kube-proxy does; they exist once the
# nf_conntrack module is loaded (on a node, any conntrack rule has loaded it).
if [ ! -e /proc/sys/net/netfilter/nf_conntrack_max ]; then
  echo "setup: loading nf_conntrack" >&2
  "${sudo_if_needed[@]}" modprobe nf_conntrack
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  # tap's runner is compiled for the plugins in .taprc (its typescript plugin is off). A run that
  # finds it built for others rebuilds it, but still starts that run's tests with the old loaders.
  npx tap build >/dev/null
fi

addon=build/Release/kubenft_native.node
if [ ! -f "$addon" ] || [ -n "$(find native binding.gyp -newer "$addon" 2>/dev/null | head -1)" ]; then
  echo "setup: building the native addon" >&2
  npx node-gyp rebuild --loglevel=error >/dev/null
fi

npx tsc -p tsconfig.json
# The shipped agent: one bundle (scripts/bundle.mjs says why).
node scripts/bundle.mjs
