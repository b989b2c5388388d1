# Stand-ins for the upstream images the deployment names, built from Debian's
# packages on a debootstrap base (no registry is reachable in the tests).
# tests/engine.rs makes the base and builds each stage with --target:
#
#   debootstrap --variant=minbase --include=<packages> bookworm tree
#   tar -C tree -c . | docker import - promsnmp-test/debian:bookworm
#   docker build --target redis -t promsnmp-test/redis -f standins.Dockerfile <context>
#
# Each stage behaves as the upstream image does where the deployment relies
# on it: the entrypoint, the user, the paths the Compose file and the stack
# mount, the stop signal.

ARG BASE_IMAGE=promsnmp-test/debian:bookworm

# redis:7.4-alpine: `redis-server` as user redis in /data; the upstream image
# turns protected mode off (no password, reached over the container network).
FROM ${BASE_IMAGE} AS redis
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]

# haproxy:2.8-alpine: the configuration at /usr/local/etc/haproxy, master-worker
# in the foreground as user haproxy, SIGUSR1 to stop gracefully.
FROM ${BASE_IMAGE} AS haproxy
RUN mkdir -p /usr/local/etc/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
ENTRYPOINT ["/usr/sbin/haproxy", "-W", "-db"]
CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]

# prom/prometheus: the binary as entrypoint, user nobody, data in /prometheus.
FROM ${BASE_IMAGE} AS prometheus
RUN mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

# An SNMP agent: net-snmp's snmpd, community `public`, on udp/161.
FROM ${BASE_IMAGE} AS snmpd
COPY snmpd.conf /etc/snmp/standin.conf
ENTRYPOINT ["/usr/sbin/snmpd", "-f", "-Lo", "-C", "-c", "/etc/snmp/standin.conf"]

# rust:1.95-bookworm: this machine's Rust toolchain (its sysroot's bin and
# lib) and crate cache, on the base (gcc and libc6-dev link). Offline: the
# crates come from the copied cache, never from the network.
FROM ${BASE_IMAGE} AS rust
COPY rust /usr/local/rust
COPY cargo /opt/cargo
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/opt/cargo \
    CARGO_NET_OFFLINE=true

# gcr.io/distroless/cc-debian12:nonroot: the files of glibc, libgcc, OpenSSL,
# base-files, netbase, tzdata and the CA certificates, users root, nobody and
# nonroot (65532), no shell, no package manager.
FROM ${BASE_IMAGE} AS distroless-files
RUN set -e; mkdir -p /out/usr/bin /out/usr/sbin /out/usr/lib /out/usr/lib64; \
    for merged in bin sbin lib lib64; do ln -s "usr/$merged" "/out/$merged"; done; \
    for package in libc6 libgcc-s1 libssl3 base-files netbase tzdata ca-certificates; do \
      dpkg -L "$package" | while read -r path; do \
        if [ -e "$path" ] && [ ! -d "$path" ] || [ -L "$path" ]; then cp -a --parents "$path" /out/; fi; \
      done; \
    done; \
    cp -a --parents /etc/ssl/certs /out/; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/etc/passwd; \
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > /out/etc/group; \
    mkdir -p /out/tmp /out/home/nonroot /out/root; chmod 1777 /out/tmp; chown 65532:65532 /out/home/nonroot; \
    rm -f /out/bin/sh /out/usr/bin/sh

FROM scratch AS distroless-cc
COPY --from=distroless-files /out /
USER 65532:65532
WORKDIR /home/nonroot
