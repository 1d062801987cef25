# Docker tier (tests/test_docker.py). Sourced by .ci/run; idempotent.
#
# Debian's docker.io brings dockerd, containerd, runc and docker-init; the tests start a private dockerd of
# their own (tests/dockerkit.py) and stop it afterwards, so nothing is left running; likewise a private sshd
# (openssh-server) through which one engine is reached as ssh://. The test image is built
# from a minimal Debian root filesystem with tmux, git and Python (debootstrap, about 50 s), kept as a
# tarball under $AO_TOOLS so later runs only `docker import` it (about 3 s).
AO_DOCKER_ROOTFS="$AO_TOOLS/docker/rootfs-bookworm-tmux-git-python3.tar"
export AO_DOCKER_ROOTFS
ao_docker_packages=()
command -v dockerd >/dev/null 2>&1 || ao_docker_packages+=(docker.io)
[ -s "$AO_DOCKER_ROOTFS" ] || command -v debootstrap >/dev/null 2>&1 || ao_docker_packages+=(debootstrap)
[ -x /usr/sbin/sshd ] || ao_docker_packages+=(openssh-server)   # an ssh:// engine in the tests
command -v openssl >/dev/null 2>&1 || ao_docker_packages+=(openssl)   # a tcp:// engine's TLS certificates
if [ "${#ao_docker_packages[@]}" -gt 0 ]; then
    apt-get update -qq
    # No service may start on install (openssh-server would listen on port 22): a policy-rc.d saying so, unless
    # the machine has one already, removed afterwards. The tests start their own sshd on 127.0.0.1.
    ao_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && ao_policy=1
    fi
    # removed whether the install works or not (this file is sourced under set -e: no trap of our own)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${ao_docker_packages[@]}" >/dev/null; then
        [ -z "$ao_policy" ] || rm -f /usr/sbin/policy-rc.d
        echo "apt-get install ${ao_docker_packages[*]} failed" >&2
        return 1
    fi
    [ -z "$ao_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
if [ ! -s "$AO_DOCKER_ROOTFS" ]; then
    mkdir -p "$AO_TOOLS/docker"
    ao_docker_tmp=$(mktemp -d "$AO_TOOLS/docker/build.XXXXXX")
    echo "building the test image's root filesystem (debootstrap, about a minute)"
    debootstrap --variant=minbase --include=tmux,git,python3 bookworm "$ao_docker_tmp/root" >"$ao_docker_tmp/log" 2>&1 \
        || { tail -20 "$ao_docker_tmp/log" >&2; rm -rf "$ao_docker_tmp"; exit 1; }
    # Documentation, translations and package lists are half the size and of no use to the tests.
    rm -rf "$ao_docker_tmp/root"/usr/share/{doc,man,info,locale} "$ao_docker_tmp/root"/var/cache/apt/* \
        "$ao_docker_tmp/root"/var/lib/apt/lists/*
    tar -C "$ao_docker_tmp/root" -cf "$ao_docker_tmp/rootfs.tar" .
    mv "$ao_docker_tmp/rootfs.tar" "$AO_DOCKER_ROOTFS"
    rm -rf "$ao_docker_tmp"
fi
dockerd --version
unset ao_docker_packages ao_docker_tmp ao_policy
