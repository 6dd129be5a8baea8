#!/bin/bash
# Container health check: 200 from /health/ready on the relay's own port. A script, so the check
# is one word for engines that split HEALTHCHECK commands on spaces; bash's /dev/tcp, so the
# image needs no HTTP client.
exec 3<>"/dev/tcp/127.0.0.1/${PORT:-8080}" || exit 1
printf 'GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
IFS= read -r -t 2 status <&3 || exit 1
[[ "$status" == *" 200 "* ]]
