# Sentry in a container. The ptrace platform needs ptrace and namespaces
# inside the container:
#   docker build -t sentry .
#   docker run --rm --cap-add SYS_PTRACE --cap-add SYS_ADMIN \
#       --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#       sentry run -- /bin/ls -la /
# (SYS_ADMIN and an unconfined seccomp profile let the Sentry create the
# stubs' user/pid/net/mount/ipc namespaces; add --device /dev/kvm for kvm.)
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends gcc make libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir .
ENTRYPOINT ["sentry"]
CMD ["run", "--", "/bin/ls", "-la", "/"]
