#!/bin/sh
# As the upstream redis image: protected mode off, so that clients on the
# container network reach a Redis without a password.
set -e
if [ "$1" = "redis-server" ]; then
  shift
  exec redis-server "$@" --protected-mode no
fi
exec "$@"
