#!/bin/bash
# The QUIC interop runner's entry point; also works outside docker (HOST, PORT, WWW, CERTS, ...).
set -e
if [ -x /setup.sh ]; then
    /setup.sh
fi
if [ "$ROLE" = "client" ] && [ -x /wait-for-it.sh ]; then
    /wait-for-it.sh sim:57832 -s -t 30  # the runner's network simulator must be up first
fi
cd "$(dirname "$0")/.."
echo "quicproxy interop endpoint: ROLE=$ROLE TESTCASE=$TESTCASE"
exec python3 -m interop.endpoint "$ROLE"
