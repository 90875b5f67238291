#!/bin/sh
# Compiles the socket LB's BPF programs and writes the bpftool skeleton that embeds them in the addon.
# Usage: skeleton.sh SOURCE.bpf.c OUTPUT.skel.h
set -eu
source=$1 output=$2
object=${output%.skel.h}.bpf.o
mkdir -p "$(dirname "$output")"
# Debian keeps asm/types.h under the multiarch include directory.
clang -O2 -g -Wall -Werror -target bpf -idirafter "/usr/include/$(gcc -dumpmachine)" -c "$source" -o "$object"
PATH=$PATH:/usr/sbin bpftool gen skeleton "$object" name socket_lb > "$output.tmp"
mv "$output.tmp" "$output"
